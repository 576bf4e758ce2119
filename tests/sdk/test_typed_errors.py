"""Typed errors: a conversation the backend does not have, a conversation that is busy."""

from __future__ import annotations

import anyio
import pytest

from lettabot import sdk
from lettabot.testing.letta_home import LettaHome

pytestmark = pytest.mark.anyio

UNKNOWN_CONVERSATION = "local-conv-00000000-0000-4000-8000-000000000000"


async def test_resuming_an_unknown_conversation_raises_conversation_not_found(
    letta_home: LettaHome, transport: str
) -> None:
    await sdk.create_agent(model=letta_home.model)  # the folder has an agent
    session = sdk.resume_session(UNKNOWN_CONVERSATION)
    try:
        with anyio.fail_after(90), pytest.raises(sdk.ConversationNotFoundError) as caught:
            await session.connect()
    finally:
        await session.close()
    assert caught.value.conversation_id == UNKNOWN_CONVERSATION
    assert isinstance(caught.value, sdk.LettaSDKError)


async def test_resuming_the_default_conversation_of_an_unknown_agent_raises_not_found(
    letta_home: LettaHome, transport: str
) -> None:
    agent_id = "agent-local-00000000-0000-0000-0000-000000000000"
    session = sdk.resume_session(agent_id)
    try:
        with anyio.fail_after(90), pytest.raises(sdk.AgentNotFoundError) as caught:
            await session.connect()
    finally:
        await session.close()
    assert caught.value.agent_id == agent_id
    # The runtime catches one error for "this conversation is gone", whichever part is.
    assert isinstance(caught.value, sdk.ConversationNotFoundError)


BUSY_WORDS = [
    # the local backend (CLI 0.34.12)
    "Conversation local-conv-1 already has an active run (run-local-2)",
    # the CLI's words for the cloud backend's refusal
    "Cannot send a new message: another request is currently being processed for this "
    "conversation",
    "conversation conv-1 is busy with another active run run_id=run-3",
]


@pytest.mark.parametrize("words", BUSY_WORDS)
def test_a_stream_json_result_refused_as_busy_has_the_busy_code(words: str) -> None:
    from lettabot.sdk._internal.parser import TurnTracker, parse_stream_json

    [raw] = parse_stream_json({"type": "result", "subtype": "error", "is_error": True,
                               "error": words, "num_turns": 0})
    assert isinstance(raw, sdk.ResultMessage)
    result = TurnTracker().complete(raw)
    assert result.error_code == sdk.CONVERSATION_BUSY == "conversation_busy"
    assert result.error == words


@pytest.mark.parametrize("words", BUSY_WORDS)
def test_an_app_server_turn_refused_as_busy_has_the_busy_code(words: str) -> None:
    from lettabot.sdk._internal.app_server.turn import TurnState

    [result] = TurnState(partial=False).finish({"type": "turn_finished", "error": words},
                                               "agent-local-1", "local-conv-1")
    assert isinstance(result, sdk.ResultMessage)
    assert not result.success and result.error_code == sdk.CONVERSATION_BUSY


def test_other_failures_keep_their_code() -> None:
    from lettabot.sdk._internal.app_server.turn import TurnState
    from lettabot.sdk._internal.parser import TurnTracker, parse_stream_json

    [raw] = parse_stream_json({"type": "result", "subtype": "error", "is_error": True,
                               "error": "the model is down"})
    assert isinstance(raw, sdk.ResultMessage)
    assert TurnTracker().complete(raw).error_code == "error"
    [result] = TurnState(partial=False).finish(
        {"type": "turn_finished", "error": "boom", "stop_reason": "llm_api_error"}, None, None)
    assert isinstance(result, sdk.ResultMessage)
    assert result.error_code == "llm_api_error"


def test_the_cli_words_for_a_missing_conversation_or_agent() -> None:
    from lettabot.sdk._internal.cli_words import not_found_error

    error = not_found_error("CLI stderr:\nConversation local-conv-9 not found")
    assert isinstance(error, sdk.ConversationNotFoundError)
    assert error.conversation_id == "local-conv-9"
    error = not_found_error("Error: Agent agent-local-3 not found")
    assert isinstance(error, sdk.AgentNotFoundError) and error.agent_id == "agent-local-3"
    assert not_found_error("the model was not found") is None
