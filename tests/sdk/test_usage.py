"""A turn's ``usage``: the tokens of every model call of the turn, on both transports (the
App Server's ``turn_finished`` carries none: the SDK sums its ``usage_statistics``)."""

from __future__ import annotations

import pytest

from lettabot import sdk
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer, ToolCall

pytestmark = pytest.mark.anyio


async def test_a_turn_reports_the_tokens_of_every_model_call(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer,
) -> None:
    scripted_model.on("count me", Reply(tool_calls=(ToolCall("Bash", {
        "command": "echo counted", "description": "echo"}),), tokens=(1200, 30)))
    scripted_model.on(lambda r: r.after_tool, Reply.say("done", tokens=(1500, 4)))
    agent = await sdk.create_agent(model=letta_home.model)
    async with sdk.create_session(agent, permission_mode="bypassPermissions") as session:
        result = await session.run_turn("count me")
    assert result.success and result.result == "done"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens,
            result.usage.total_tokens) == (2700, 34, 2734)
