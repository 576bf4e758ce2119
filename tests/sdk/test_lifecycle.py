"""Interrupts, history, failures and bad input."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import anyio
import pydantic
import pytest

from lettabot import sdk
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = pytest.mark.anyio


async def test_abort_interrupts_a_running_turn(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on(
        "tell me a long story", Reply.say("once upon a time " * 200, chunk_delay=0.05)
    )
    async with sdk.create_session(await sdk.create_agent(model=letta_home.model)) as session:
        await session.send("tell me a long story")
        started = anyio.Event()
        messages: list[sdk.Message] = []

        async def consume() -> None:
            async for msg in session.stream():
                messages.append(msg)
                started.set()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(1.0)
                await session.abort()
        result = messages[-1]
        assert result.type == "result"
        assert result.subtype == "interrupted" and not result.success
        # The session is still usable after an interrupt.
        again = await session.run_turn("still there?")
    assert again.result == "You said: still there?"


async def test_list_messages_returns_the_history(letta_home: LettaHome, transport: str) -> None:
    async with sdk.create_session(await sdk.create_agent(model=letta_home.model)) as session:
        await session.run_turn("first words")
        await session.run_turn("second words")
        newest_first = await session.list_messages()
        oldest_first = await session.list_messages(order="asc")
        one = await session.list_messages(limit=1)
    text = repr(oldest_first)
    assert "first words" in text and "You said: second words" in text
    assert text.index("first words") < text.index("second words")
    assert newest_first == list(reversed(oldest_first))
    assert len(one) == 1 and one[0] == newest_first[0]


async def test_bootstrap_state_names_the_conversation(
    letta_home: LettaHome, transport: str
) -> None:
    async with sdk.create_session(await sdk.create_agent(model=letta_home.model)) as session:
        await session.run_turn("hello")
        state = await session.bootstrap_state()
    assert session.conversation_id in repr(state)


async def test_model_error_ends_the_turn_with_an_error_result(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on("break please", Reply.fail(400, "scripted bad request"))
    async with sdk.create_session(await sdk.create_agent(model=letta_home.model)) as session:
        with anyio.fail_after(120):
            result = await session.run_turn("break please")
        assert not result.success
        assert result.error
        ok = await session.run_turn("and now?")
    assert ok.result == "You said: and now?"


async def test_max_turns_stops_a_tool_loop(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    # A model that calls a tool forever.
    scripted_model.on(lambda r: True, Reply.tool("Bash", command="echo again", description="loop"))
    async with sdk.create_session(
        await sdk.create_agent(model=letta_home.model),
        max_turns=2,
        permission_mode="bypassPermissions",
    ) as session:
        with anyio.fail_after(120):
            await session.send("loop forever")
            messages = [m async for m in session.stream()]
    result = messages[-1]
    assert result.type == "result" and not result.success
    assert result.error_code == "max_turns"
    assert sum(1 for m in messages if m.type == "tool_call") <= 3


@pytest.mark.parametrize("transport", ["subprocess"], indirect=True)
async def test_cli_killed_mid_turn_gives_an_error_result(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on("slow", Reply.hanging())
    session = sdk.create_session(await sdk.create_agent(model=letta_home.model))
    async with session:
        await session.send("slow")
        await anyio.sleep(1.0)
        process = session._transport._process  # type: ignore[union-attr]
        os.kill(process.pid, signal.SIGKILL)
        with anyio.fail_after(30):
            messages = [m async for m in session.stream()]
    result = messages[-1]
    assert result.type == "result" and not result.success
    assert result.error_code == "process_exited"
    assert "exited unexpectedly" in (result.error or "")
    assert process.returncode is not None


async def test_close_reaps_the_cli(letta_home: LettaHome) -> None:
    session = sdk.create_session(
        await sdk.create_agent(model=letta_home.model, transport="subprocess"),
        transport="subprocess",
    )
    await session.run_turn("hi")
    process = session._transport._process  # type: ignore[union-attr]
    await session.close()
    assert process.returncode is not None
    with pytest.raises(sdk.SessionClosedError):
        await session.send("after close")


async def test_cancelling_a_turn_reaps_the_cli(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on("slow", Reply.hanging())
    session = sdk.create_session(
        await sdk.create_agent(model=letta_home.model, transport="subprocess"),
        transport="subprocess",
    )
    with anyio.move_on_after(3):
        async with session:
            await session.run_turn("slow")
    process = session._transport  # closed: transport released
    assert process is None


def test_bad_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="not an agent or conversation id"):
        sdk.resume_session("banana")
    with pytest.raises(ValueError, match="not an agent id"):
        sdk.create_session("conv-123")
    # Both id shapes are recognised.
    assert sdk.resume_session("agent-1b2c").target.conversation_id == "default"
    assert sdk.resume_session("agent-local-1b2c").target.agent_id == "agent-local-1b2c"
    assert sdk.resume_session("conv-abc").target.conversation_id == "conv-abc"
    assert sdk.resume_session("local-conv-7").target.conversation_id == "local-conv-7"


async def test_unknown_agent_fails_clearly(letta_home: LettaHome, transport: str) -> None:
    session = sdk.resume_session("agent-local-00000000-0000-0000-0000-000000000000")
    with pytest.raises(sdk.LettaSDKError, match=r"(?i)agent|not found"):
        with anyio.fail_after(60):
            await session.run_turn("hello?")
    await session.close()


def test_bad_options_are_refused_with_the_option_named(tmp_path: Path) -> None:
    cases = {
        "permission_mode": dict(permission_mode="yolo"),
        "max_turns": dict(max_turns=0),
        "cwd": dict(cwd=tmp_path / "missing"),
        "memory": dict(memory=["favourite_colour"]),
        "system_prompt": dict(system_prompt=""),
        "can_use_tool": dict(can_use_tool="yes"),
    }
    for name, options in cases.items():
        with pytest.raises(pydantic.ValidationError, match=name):
            sdk.create_session(**options)  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError, match="persona"):
        sdk.create_session(memory=["human"], persona="x")
    with pytest.raises(ValueError, match="NEW conversations"):
        sdk.resume_session("agent-local-1", persona="x")


async def test_missing_cli_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETTA_CLI_PATH", "/nonexistent/letta")
    with pytest.raises(sdk.CLINotFoundError, match="pip install letta"):
        await sdk.prompt("hi", transport="subprocess")


async def test_malformed_cli_output_is_skipped(
    letta_home: LettaHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrapper that adds garbage lines to the real CLI's output changes nothing."""
    from lettabot.sdk._internal.cli import find_cli

    real = find_cli()
    wrapper = tmp_path / "noisy-letta"
    wrapper.write_text(
        f"#!/bin/sh\necho 'this is not json'\necho '[1, 2, 3]'\nexec \"{real}\" \"$@\"\n"
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("LETTA_CLI_PATH", str(wrapper))
    agent_id = await sdk.create_agent(model=letta_home.model, transport="subprocess")
    result = await sdk.prompt("still fine", agent_id, transport="subprocess")
    assert result.result == "You said: still fine"


async def test_abort_while_the_model_hangs(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    """A caller's timeout cancels stream() mid-turn; abort() then still ends the turn."""
    scripted_model.on("hang please", Reply.hanging(), times=1)
    async with sdk.create_session(await sdk.create_agent(model=letta_home.model)) as session:
        await session.send("hang please")
        with anyio.move_on_after(2):
            async for _ in session.stream():
                pass  # the model sends nothing
        await session.abort()
        with anyio.fail_after(30):
            messages = [m async for m in session.stream()]
        result = messages[-1]
        assert result.type == "result" and result.subtype == "interrupted"
        if transport == "subprocess":
            # The process that held the hung request is replaced: the conversation goes on.
            with anyio.fail_after(60):
                again = await session.run_turn("after the hang")
            assert again.result == "You said: after the hang"
