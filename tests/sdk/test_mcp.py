"""MCP servers as the agent's tools: real servers (the official SDK's MCPServer, over stdio
and streamable HTTP) started by the tests, real turns through the real CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lettabot import sdk
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer
from tests.sdk.mcp_servers import DEMO, demo_http_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]



def stdio_server(**fields: Any) -> sdk.McpStdioServer:
    return sdk.McpStdioServer(name="demo", command=sys.executable, args=[str(DEMO), "stdio"],
                              **fields)


@pytest.fixture
def http_url() -> Iterator[str]:
    """A streamable-HTTP MCP server in its own process."""
    with demo_http_server() as url:
        yield url


def allow_all(asked: list[str]) -> Any:
    def decide(name: str, tool_input: dict[str, Any]) -> sdk.PermissionResult:
        asked.append(name)
        return sdk.PermissionAllow()
    return decide


async def _agent(home: LettaHome) -> str:
    return await sdk.create_agent(model=home.model)


async def test_stdio_server_tools_are_the_agents(
    letta_home: LettaHome, transport: str, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on("add please", Reply.tool("mcp__demo__add", a=2, b=3))
    asked: list[str] = []
    async with sdk.create_session(await _agent(letta_home), mcp_servers=[stdio_server()],
                                  can_use_tool=allow_all(asked)) as session:
        result = await session.run_turn("add please")
        [state] = session.mcp_status()
        lookup = session.mcp_tool("mcp__demo__lookup")
        add = session.mcp_tool("mcp__demo__add")
    assert session.mcp_status() == []  # closed: its servers stopped
    assert result.result == "Tool result: sum=5"
    assert asked == ["mcp__demo__add"]  # asked like any tool
    assert {"mcp__demo__add", "mcp__demo__lookup"} <= set(scripted_model.requests[0].tool_names)
    assert state.connected and state.type == "stdio"
    assert lookup is not None and lookup.read_only and lookup.server == "demo"
    assert add is not None and not add.read_only


async def test_http_server_with_headers(
    letta_home: LettaHome, scripted_model: ScriptedModelServer, http_url: str
) -> None:
    scripted_model.on("look up", Reply.tool("mcp__web__lookup", word="stressed"))
    server = sdk.McpHttpServer(name="web", url=http_url, headers={"X-Test": "1"})
    async with sdk.create_session(await _agent(letta_home), mcp_servers=[server],
                                  can_use_tool=allow_all([])) as session:
        result = await session.run_turn("look up stressed")
        [state] = session.mcp_status()
    assert result.result == "Tool result: stressed means desserts"
    assert state.connected and state.type == "http"


async def test_denied_call_never_reaches_the_server(
    letta_home: LettaHome, scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    scripted_model.on("write it", Reply.tool("mcp__demo__write_here", name="out.txt",
                                             text="hello"))

    def deny(name: str, tool_input: dict[str, Any]) -> sdk.PermissionResult:
        return sdk.PermissionDeny(message="Not today.")

    async with sdk.create_session(await _agent(letta_home),
                                  mcp_servers=[stdio_server(cwd=tmp_path)],
                                  can_use_tool=deny) as session:
        result = await session.run_turn("write it")
    assert "Not today." in (result.result or "")
    assert not (tmp_path / "out.txt").exists()


async def test_a_crashed_server_is_an_error_then_restarted(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on("who first", Reply.tool("mcp__demo__whoami"))
    scripted_model.on("crash now", Reply.tool("mcp__demo__crash"))
    scripted_model.on("who again", Reply.tool("mcp__demo__whoami"))
    server = stdio_server(restart_backoff=(0.1, 1.0))
    async with sdk.create_session(await _agent(letta_home), mcp_servers=[server],
                                  can_use_tool=allow_all([])) as session:
        first = await session.run_turn("who first")
        crashed = await session.run_turn("crash now")
        again = await session.run_turn("who again")
        [state] = session.mcp_status()
    assert (first.result or "").startswith("Tool result: pid=")
    assert "MCP server 'demo' stopped during crash" in (crashed.result or "")
    assert (again.result or "").startswith("Tool result: pid=")
    assert again.result != first.result  # a new process
    assert state.restarts >= 1 and state.connected


async def test_a_hanging_call_times_out_and_the_server_recovers(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.on("hang now", Reply.tool("mcp__demo__hang"))
    scripted_model.on("add after", Reply.tool("mcp__demo__add", a=1, b=1))
    server = stdio_server(call_timeout=2, restart_backoff=(0.1, 1.0))
    async with sdk.create_session(await _agent(letta_home), mcp_servers=[server],
                                  can_use_tool=allow_all([])) as session:
        hung = await session.run_turn("hang now")
        after = await session.run_turn("add after")
    assert "did not answer hang within 2 s" in (hung.result or "")
    assert after.result == "Tool result: sum=2"


async def test_close_stops_the_server_and_env_is_minimal(
    letta_home: LettaHome, scripted_model: ScriptedModelServer,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LETTABOT_TEST_SECRET", "hunter2")
    scripted_model.on("secret?", Reply.tool("mcp__demo__getenv", name="LETTABOT_TEST_SECRET"))
    scripted_model.on("given?", Reply.tool("mcp__demo__getenv", name="GIVEN"))
    scripted_model.on("who", Reply.tool("mcp__demo__whoami"))
    server = stdio_server(env={"GIVEN": "yes"}, command_prefix=["env", "VIA_PREFIX=1"])
    async with sdk.create_session(await _agent(letta_home), mcp_servers=[server],
                                  can_use_tool=allow_all([])) as session:
        secret = await session.run_turn("secret?")
        given = await session.run_turn("given?")
        who = await session.run_turn("who")
    assert secret.result == "Tool result: LETTABOT_TEST_SECRET=<unset>"
    assert given.result == "Tool result: GIVEN=yes"
    pid = int((who.result or "").rpartition("pid=")[2])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_server_that_cannot_start_leaves_the_session_usable(
    letta_home: LettaHome, scripted_model: ScriptedModelServer
) -> None:
    broken = sdk.McpStdioServer(name="broken", command=sys.executable,
                                args=["-c", "import sys; sys.exit('no config here')"],
                                connect_timeout=10)
    async with sdk.create_session(await _agent(letta_home), mcp_servers=[broken],
                                  can_use_tool=allow_all([])) as session:
        result = await session.run_turn("hello there")
        [state] = session.mcp_status()
    assert result.result == "You said: hello there"
    assert not state.connected and state.error
    assert not any(n.startswith("mcp__") for n in scripted_model.requests[-1].tool_names)


def test_tool_names_fit_the_model_apis() -> None:
    from lettabot.sdk._internal.mcp_bridge import tool_name

    assert tool_name("git-hub", "search.issues") == "mcp__git-hub__search_issues"
    long = tool_name("server", "x" * 80)
    assert len(long) == 64 and long != tool_name("server", "x" * 81)
    with pytest.raises(ValueError):
        sdk.SessionOptions(mcp_servers=[stdio_server(), stdio_server()])


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def test_giving_up_on_a_server_that_never_answers_reaps_it(tmp_path: Path) -> None:
    """Opening is cancelled while a server has not answered: its process is gone after."""
    import uuid

    import anyio

    marker = f"mcp-sleeper-{uuid.uuid4().hex}"
    mute = sdk.McpStdioServer(name="mute", command=sys.executable,
                              args=["-c", "import time; time.sleep(600)", marker],
                              connect_timeout=600)
    session = sdk.create_session("agent-local-00000000-0000-0000-0000-000000000000",
                                 mcp_servers=[mute])
    with anyio.move_on_after(2):
        await session.connect()
    assert session.init is None
    assert not _processes_naming(marker)
    await session.close()
