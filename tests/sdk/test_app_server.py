"""The app_server transport against the real ``letta server`` (scripted model, no network)."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import pytest

from lettabot import sdk
from lettabot.sdk._internal.app_server import frames
from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk._internal.app_server.pool import shared_slots
from lettabot.sdk.errors import CLIConnectionError, ProtocolTimeoutError
from lettabot.testing.app_server import external_app_server
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = pytest.mark.anyio


def _server_pid() -> int:
    pids = [s.server.pid for s in shared_slots() if s.server is not None and s.server.alive()]
    assert len(pids) == 1, pids
    assert pids[0] is not None
    return pids[0]


async def test_turns_share_one_server_and_it_stops_with_the_last_session(
    letta_home: LettaHome, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LETTABOT_SDK_APP_SERVER_IDLE", "0")  # else it idles (test_app_server_idle)
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    async with sdk.create_session(agent, transport="app_server") as one:
        pid = _server_pid()
        async with sdk.create_session(agent, transport="app_server") as two:
            assert (await one.run_turn("first")).result == "You said: first"
            assert (await two.run_turn("other")).result == "You said: other"
            assert (await one.run_turn("second")).result == "You said: second"
            assert _server_pid() == pid
            assert one.conversation_id != two.conversation_id
    with pytest.raises(ProcessLookupError):
        for _ in range(100):  # reaped: the pid is gone
            os.kill(pid, 0)
            await anyio.sleep(0.05)


async def test_fifty_sessions_at_once_none_crossed(letta_home: LettaHome) -> None:
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    sessions = [sdk.create_session(agent, transport="app_server") for _ in range(50)]
    replies: dict[int, str | None] = {}

    async def talk(i: int) -> None:
        async with sessions[i] as session:
            replies[i] = (await session.run_turn(f"token-{i}-xyz")).result

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(talk, i)
    assert replies == {i: f"You said: token-{i}-xyz" for i in range(50)}


async def test_fresh_server_takes_concurrent_first_turns(letta_home: LettaHome) -> None:
    """Quirk 1: the first turn on a new server is let through alone, the rest wait for it."""
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    results: list[Any] = []

    async def talk(i: int) -> None:
        async with sdk.create_session(agent, transport="app_server") as session:
            results.append(await session.run_turn(f"hello {i}"))

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(talk, i)
    assert sorted(r.result for r in results) == sorted(f"You said: hello {i}" for i in range(12))
    assert all(r.success for r in results)


async def test_message_right_after_an_approval_turn_is_delivered(letta_home: LettaHome) -> None:
    """Quirk 2: an input just after an approval turn may be refused; it is retried."""
    target = letta_home.workdir / "approved.txt"
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    async with sdk.create_session(
        agent, transport="app_server", can_use_tool=lambda name, args: sdk.PermissionAllow()
    ) as session:
        for i in range(3):
            first = await session.run_turn(f"run: echo {i} > {target}")
            assert first.success and target.read_text() == f"{i}\n"
            again = await session.run_turn(f"right after {i}")
            assert again.result == f"You said: right after {i}"


async def test_server_killed_mid_turn_ends_the_turn_and_the_next_send_works(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on("slow", Reply.say("a b c d e f g h i j k l m n o p", chunk_delay=0.5))
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    async with sdk.create_session(
        agent, transport="app_server", include_partial_messages=True
    ) as session:
        assert (await session.run_turn("warm")).success
        conversation = session.conversation_id
        pid = _server_pid()
        await session.send("slow")
        messages: list[Any] = []
        with anyio.fail_after(30):
            async for msg in session.stream():
                messages.append(msg)
                if msg.type == "stream_event" and len(messages) == 1:
                    os.kill(pid, signal.SIGKILL)  # mid-turn: the reply is still streaming
        result = messages[-1]
        assert result.type == "result" and not result.success
        assert "App Server" in (result.error or "")
        # The next send restarts the server and resumes the same conversation.
        after = await session.run_turn("back again")
        assert after.success and after.result == "You said: back again"
        assert _server_pid() != pid
        assert session.conversation_id == conversation


async def test_abort_interrupts_the_turn(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on("long story", Reply.say("word " * 80, chunk_delay=0.2))
    async with sdk.create_session(model=letta_home.model, transport="app_server") as session:
        await session.send("long story")
        await anyio.sleep(1.0)
        await session.abort()
        with anyio.fail_after(15):
            messages = [m async for m in session.stream()]
        assert messages[-1].type == "result" and messages[-1].subtype == "interrupted"
        assert (await session.run_turn("still here")).result == "You said: still here"


async def test_custom_tool_and_permission_over_the_app_server(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    @sdk.tool("add_numbers", "Add two numbers", {"a": int, "b": int})
    async def add(args: dict[str, Any]) -> str:
        return f"SUM={args['a'] + args['b']}"

    asked: list[str] = []

    def decide(name: str, args: dict[str, Any]) -> sdk.PermissionResult:
        asked.append(name)
        return sdk.PermissionAllow() if name == "add_numbers" else sdk.PermissionDeny(message="no")

    scripted_model.on("add please", Reply.tool("add_numbers", a=2, b=3))
    target = letta_home.workdir / "denied.txt"
    async with sdk.create_session(
        model=letta_home.model, transport="app_server", tools=[add], can_use_tool=decide
    ) as session:
        assert (await session.run_turn("add please")).result == "Tool result: SUM=5"
        denied = await session.run_turn(f"run: echo x > {target}")
    assert asked == ["add_numbers", "Bash"]
    assert denied.success and not target.exists()


@pytest.fixture
def token_server(letta_home: LettaHome) -> Any:
    with external_app_server("s3cret-token", letta_home.workdir) as server:
        yield server.url


async def test_external_server_with_a_capability_token(
    letta_home: LettaHome, token_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LETTA_APP_SERVER_URL", token_server)
    monkeypatch.setenv("LETTA_APP_SERVER_TOKEN", "s3cret-token")
    async with sdk.create_session(model=letta_home.model, transport="app_server") as session:
        assert (await session.run_turn("over the token")).result == "You said: over the token"
    monkeypatch.setenv("LETTA_APP_SERVER_TOKEN", "wrong")
    with pytest.raises(CLIConnectionError, match="401"):
        async with sdk.create_session(model=letta_home.model, transport="app_server"):
            pass


async def test_invalid_frames_are_refused_before_sending_and_silence_times_out(
    letta_home: LettaHome,
) -> None:
    with pytest.raises(frames.FrameError, match="disable_memory_guard"):
        frames.runtime_start("r1", agent_id="a", create_conversation={},
                             execution_settings={"allowed_tools": [], "disallowed_tools": []})
    with pytest.raises(frames.FrameError, match="mode"):
        frames.runtime_start("r2", agent_id="a", create_conversation={}, mode="bogus")
    async with sdk.create_session(model=letta_home.model, transport="app_server") as session:
        await session.connect()
        conn = next(iter(shared_slots())).connection
        assert isinstance(conn, Connection)
        with pytest.raises(ProtocolTimeoutError):
            await conn.request({"type": "no_such_command", "request_id": "x-1"}, "never", 0.5)
        assert (await session.run_turn("still fine")).success


async def test_a_late_finish_of_an_aborted_turn_ends_neither_of_the_next_turns(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    """The server finishes an aborted turn only when its model call returns (here 8 s, after
    the SDK gave up waiting): that finish belongs to the aborted input, not to the next."""
    scripted_model.on("slow one", Reply.say("late answer", delay=8), times=1)
    async with sdk.create_session(model=letta_home.model, transport="app_server") as session:
        assert (await session.run_turn("warm")).success
        await session.send("slow one")
        await anyio.sleep(1.0)
        await session.abort()
        with anyio.fail_after(15):
            first = [m async for m in session.stream()][-1]
        assert first.type == "result" and first.subtype == "interrupted"
        with anyio.fail_after(30):
            second = await session.run_turn("after the slow one")
        assert second.success and second.result == "You said: after the slow one"
        third = await session.run_turn("third")
        assert third.success and third.result == "You said: third"


async def test_a_crash_before_the_model_answered_ends_the_turn_and_the_next_is_its_own(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    """The turn in flight ends with an error; the next message gets its own answer. (A
    restarted server may replay inputs it had accepted; under load the soak test shows that
    replay's output is dropped, not given to the next message.)"""
    scripted_model.on("before the crash", Reply.say("You said: before the crash", delay=3),
                      times=1)
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    async with sdk.create_session(agent, transport="app_server") as session:
        assert (await session.run_turn("warm")).success
        pid = _server_pid()
        await session.send("before the crash")
        await anyio.sleep(1.0)  # the model is "thinking"
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(30):
            crashed = [m async for m in session.stream()][-1]
        assert crashed.type == "result" and not crashed.success
        with anyio.fail_after(60):
            after = await session.run_turn("after the crash")
        assert after.result == "You said: after the crash"
        assert (await session.run_turn("and again")).result == "You said: and again"


async def test_a_first_turn_waiting_for_approval_does_not_hold_up_the_others(
    letta_home: LettaHome,
) -> None:
    """The fresh-server warm-up (quirk 1) ends once the model has answered once, not when
    the first turn finishes: that turn may wait minutes for a click."""
    release = anyio.Event()
    asked = anyio.Event()

    async def slow_click(name: str, args: dict[str, Any]) -> sdk.PermissionResult:
        asked.set()
        await release.wait()
        return sdk.PermissionDeny(message="no")

    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    target = letta_home.workdir / "warm-approval.txt"
    async with (
        sdk.create_session(agent, transport="app_server", can_use_tool=slow_click) as first,
        sdk.create_session(agent, transport="app_server") as other,
        anyio.create_task_group() as tg,
    ):
        async def waiting_turn() -> None:
            await first.run_turn(f"run: echo x > {target}")

        tg.start_soon(waiting_turn)
        with anyio.fail_after(60):
            await asked.wait()
        with anyio.fail_after(20):
            meanwhile = await other.run_turn("meanwhile")
        assert meanwhile.result == "You said: meanwhile"
        release.set()
    assert not target.exists()
