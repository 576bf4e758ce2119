"""The README's SDK section holds: its example runs as written, agents only get models the
CLI offers, a failed turn says why, and a result's conversation id reopens its conversation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from lettabot import sdk
from lettabot.sdk._internal.client import create_session, resume_session
from lettabot.sdk._internal.transport import Target
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = pytest.mark.anyio

README = Path(__file__).resolve().parents[2] / "README.md"


def sdk_example() -> str:
    """The first ``python`` code block of the README's "The SDK" section."""
    text = README.read_text()
    section = re.search(r"^## The SDK\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## The SDK' section"
    block = re.search(r"^```python\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, "the README's SDK section has no python example"
    return block.group(1)


def run_example(workdir: Path, transport: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # HOME and LETTA_LOCAL_BACKEND_DIR: the letta_home fixture's
    env.pop("LETTABOT_SDK_TRANSPORT", None)
    if transport:
        env["LETTABOT_SDK_TRANSPORT"] = transport
    return subprocess.run([sys.executable, "-c", sdk_example()], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=180)


# -- the README example ------------------------------------------------------------------


@pytest.mark.parametrize("transport", [None, "subprocess"])
def test_the_readme_sdk_example_runs_as_written(
    letta_home: LettaHome, scripted_model: ScriptedModelServer, transport: str | None
) -> None:
    scripted_model.on("Find and fix the bug in auth.py", "Fixed: auth.py compared with =.")
    scripted_model.on("What is 2 + 2?", "2 + 2 = 4")
    done = run_example(letta_home.workdir, transport)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "Fixed: auth.py compared with =." in lines, done.stdout + done.stderr
    assert "2 + 2 = 4" in lines, done.stdout + done.stderr
    assert "None" not in lines


def test_the_readme_sdk_example_prints_why_a_turn_failed(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on("What is 2 + 2?", Reply.fail(400, "scripted arithmetic outage"))
    done = run_example(letta_home.workdir)
    assert done.returncode == 0, done.stderr
    assert "scripted arithmetic outage" in done.stdout, done.stdout + done.stderr
    assert "None" not in done.stdout.splitlines()


# -- models ------------------------------------------------------------------------------


def _agents(home: LettaHome) -> set[str]:
    folder = home.backend_dir / "agents"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


async def test_create_agent_refuses_a_model_the_cli_does_not_offer(
    letta_home: LettaHome, transport: str
) -> None:
    before = _agents(letta_home)
    with pytest.raises(sdk.UnknownModelError) as caught:
        await sdk.create_agent(model="openai-compatible/no-such-model")
    error = caught.value
    assert isinstance(error, sdk.LettaSDKError) and isinstance(error, ValueError)
    assert error.model == "openai-compatible/no-such-model"
    assert letta_home.model in error.available
    assert letta_home.model in str(error) and "no-such-model" in str(error)
    assert _agents(letta_home) == before  # no agent that cannot answer was made


async def test_a_new_agent_without_a_model_gets_the_first_one_the_cli_offers(
    letta_home: LettaHome, transport: str
) -> None:
    offered = [m.handle for m in await sdk.list_models()]
    assert offered and offered[0] == letta_home.model
    agent_id = await sdk.create_agent(persona="You are terse.")
    async with sdk.resume_session(agent_id) as session:
        result = await session.run_turn("hello")
        assert session.init is not None and session.init.model == offered[0]
    assert result.success, result.error
    assert result.result == "You said: hello"


async def test_prompt_in_a_fresh_folder_makes_an_agent_that_answers(
    letta_home: LettaHome, transport: str
) -> None:
    result = await sdk.prompt("hello from nowhere")  # no agent yet: one is made
    assert result.success, result.error
    assert result.result == "You said: hello from nowhere"


async def test_a_failed_turn_carries_the_model_error_to_prompt(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on("break please", Reply.fail(400, "scripted bad request"))
    agent_id = await sdk.create_agent(model=letta_home.model)
    with anyio.fail_after(120):
        result = await sdk.prompt("break please", agent_id)
    assert not result.success and result.subtype == "error" and not result.result
    assert result.error and "scripted bad request" in result.error


# -- conversation ids --------------------------------------------------------------------


async def test_a_results_conversation_id_reopens_the_default_conversation(
    letta_home: LettaHome, transport: str
) -> None:
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.resume_session(agent_id) as session:
        first = await session.run_turn("kiwi first")
        assert first.conversation_id == session.conversation_id == agent_id
        assert first.agent_id == agent_id
    async with sdk.resume_session(first.conversation_id or "") as again:
        assert again.is_default_conversation and again.conversation_id == agent_id
        result = await again.run_turn("What was my first message?")
    assert "kiwi first" in (result.result or "")


async def test_a_results_conversation_id_reopens_a_new_conversation(
    letta_home: LettaHome, transport: str
) -> None:
    agent_id = await sdk.create_agent(model=letta_home.model)
    async with sdk.create_session(agent_id) as session:
        first = await session.run_turn("mango first")
        assert first.conversation_id == session.conversation_id
        assert (first.conversation_id or "").startswith("local-conv-")
    async with sdk.resume_session(first.conversation_id or "") as again:
        result = await again.run_turn("What was my first message?")
        assert again.conversation_id == first.conversation_id
    assert "mango first" in (result.result or "")


class _FakeTransport:
    """A transport that opens ``conversation`` of ``agent`` and ends each turn at once,
    its result naming the conversation as the CLI does (``default`` for the agent's own)."""

    def __init__(self, agent: str, conversation: str) -> None:
        self.agent, self.conversation = agent, conversation
        self.turns = 0

    async def connect(self) -> sdk.InitMessage:
        return sdk.InitMessage(agent_id=self.agent, session_id=self.conversation,
                               conversation_id=self.conversation)

    async def send(self, content: Any, *, client_message_id: str | None = None) -> str:
        self.turns += 1
        return client_message_id or "cm-1"

    async def receive(self) -> Any:
        while self.turns:
            self.turns -= 1
            yield sdk.ResultMessage(success=True, result="ok", agent_id=self.agent,
                                    conversation_id=self.conversation)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(("agent", "conversation"), [
    ("agent-6f1c2d3e-0000-4000-8000-000000000001", "default"),        # cloud, default
    ("agent-local-6f1c2d3e-0000-4000-8000-000000000002", "default"),  # local, default
    ("agent-6f1c2d3e-0000-4000-8000-000000000003", "conv-8a7b6c5d"),  # cloud
    ("agent-local-6f1c2d3e-0000-4000-8000-000000000004", "local-conv-12"),  # local
])
async def test_result_and_session_name_a_conversation_alike_for_both_id_shapes(
    agent: str, conversation: str
) -> None:
    opened: list[Target] = []

    def factory(options: Any, target: Target, session: Any) -> Any:
        opened.append(target)
        return _FakeTransport(agent, conversation)

    async with create_session(agent, {}, factory) as session:
        result = await session.run_turn("hi")
    expected = agent if conversation == "default" else conversation
    assert result.conversation_id == session.conversation_id == expected
    assert result.agent_id == agent
    async with resume_session(result.conversation_id or "", {}, factory) as again:
        assert again.conversation_id == expected
    if conversation == "default":
        assert opened[-1] == Target(agent_id=agent, conversation_id="default")
    else:
        assert opened[-1] == Target(conversation_id=conversation)
