"""A local App Server the SDK started stays up for an idle period after its last session
closes (sequential ``prompt()`` calls reuse it), then stops; nothing outlives the process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import anyio
import pytest

from lettabot import sdk
from lettabot.sdk._internal.app_server.pool import shared_slots
from lettabot.testing.letta_home import LettaHome

pytestmark = pytest.mark.anyio

IDLE_ENV = "LETTABOT_SDK_APP_SERVER_IDLE"


def _server_pid() -> int:
    pids = [s.server.pid for s in shared_slots() if s.server is not None and s.server.alive()]
    assert len(pids) == 1, pids
    assert pids[0] is not None
    return pids[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): it counts as stopped only once reaped
    return True


async def _gone(pid: int, within: float) -> bool:
    with anyio.move_on_after(within):
        while _alive(pid):  # noqa: ASYNC110 (polling another process)
            await anyio.sleep(0.05)
        return True
    return False


async def test_sequential_prompts_reuse_a_warm_server_then_it_stops(
    letta_home: LettaHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IDLE_ENV, "3")
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    async with sdk.create_session(agent, transport="app_server") as session:
        pid = _server_pid()
        assert (await session.run_turn("one")).result == "You said: one"
    assert _alive(pid), "the server stopped with its last session"
    for word in ("two", "three"):
        assert (await sdk.prompt(word, agent, transport="app_server")).result == f"You said: {word}"
        assert _alive(pid)
    async with sdk.create_session(agent, transport="app_server") as session:
        assert _server_pid() == pid  # the same process, not a new one
        assert (await session.run_turn("four")).result == "You said: four"
    # idle for longer than the idle period: stopped and reaped
    assert await _gone(pid, 3 + 10), "the idle server was not stopped"


async def test_idle_zero_stops_the_server_with_its_last_session(
    letta_home: LettaHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IDLE_ENV, "0")
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    async with sdk.create_session(agent, transport="app_server") as session:
        pid = _server_pid()
        await session.run_turn("one")
    assert await _gone(pid, 5)


async def test_the_option_overrides_the_environment(
    letta_home: LettaHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IDLE_ENV, "600")
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server",
                                   app_server_idle=0)
    async with sdk.create_session(agent, transport="app_server", app_server_idle=0) as session:
        pid = _server_pid()
        await session.run_turn("one")
    assert await _gone(pid, 5)


async def test_closing_the_default_client_stops_an_idle_server(
    letta_home: LettaHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IDLE_ENV, "600")
    agent = await sdk.create_agent(model=letta_home.model, transport="app_server")
    async with sdk.create_session(agent, transport="app_server") as session:
        pid = _server_pid()
        await session.run_turn("one")
    assert _alive(pid)
    await sdk.default_client().close()
    assert await _gone(pid, 5)
    # and the next call starts a new one
    assert (await sdk.prompt("again", agent, transport="app_server")).result == "You said: again"
    await sdk.default_client().close()


async def test_subprocess_resumes_start_no_app_server_while_the_prompt_is_current(
    letta_home: LettaHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming a default conversation on ``subprocess`` recompiles its prompt through an App
    Server only when the agent's memory changed since it was compiled."""
    from lettabot.sdk._internal.app_server import pool
    from lettabot.sdk._internal.app_server.recompile import prompt_is_current
    from lettabot.sdk._internal.cli import cli_env

    monkeypatch.setenv(IDLE_ENV, "0")
    started: list[int] = []
    real_start = pool.LocalServer.start

    async def start(self: pool.LocalServer, timeout: float) -> str:  # noqa: ASYNC109
        started.append(1)
        return await real_start(self, timeout)

    monkeypatch.setattr(pool.LocalServer, "start", start)
    agent = await sdk.create_agent(model=letta_home.model, transport="subprocess")
    async with sdk.resume_session(agent, transport="subprocess") as session:
        assert (await session.run_turn("zero")).result == "You said: zero"
    before = len(started)
    env = cli_env({})
    assert prompt_is_current(env, agent, "default")
    for word in ("one", "two"):
        async with sdk.resume_session(agent, transport="subprocess") as session:
            assert (await session.run_turn(word)).result == f"You said: {word}"
    assert len(started) == before, "a resume started an App Server to recompile a current prompt"
    # memory committed since (as the agent does): the next resume recompiles (through a server)
    memory = letta_home.memory_dir(agent)
    (memory / "notes.md").write_text("---\nname: notes\ndescription: Facts\n---\nA new fact.\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    await anyio.run_process([*git, "add", "notes.md"], cwd=memory)
    await anyio.run_process([*git, "commit", "-qm", "fact", "--no-verify"], cwd=memory)
    assert not prompt_is_current(env, agent, "default")
    async with sdk.resume_session(agent, transport="subprocess") as session:
        assert (await session.run_turn("three")).result == "You said: three"
    assert len(started) == before + 1
    assert prompt_is_current(env, agent, "default")


def test_an_idle_server_does_not_outlive_the_interpreter(letta_home: LettaHome) -> None:
    script = textwrap.dedent(f"""
        import asyncio, os
        os.environ[{IDLE_ENV!r}] = "600"
        from lettabot import sdk
        from lettabot.sdk._internal.app_server.pool import idle_servers

        async def main():
            agent = await sdk.create_agent(model={letta_home.model!r}, transport="app_server")
            await sdk.prompt("hi", agent, transport="app_server")
            print([s.pid for s in idle_servers()], flush=True)

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=os.environ.copy(), cwd=letta_home.workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    [pid] = eval(out.stdout.strip().splitlines()[-1])
    assert not _alive(pid), "an idle App Server outlived its interpreter"
