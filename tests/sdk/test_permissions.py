"""Tools and permissions: allowed_tools, cwd, can_use_tool, permission modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lettabot import sdk
from lettabot.testing.letta_home import LettaHome

pytestmark = pytest.mark.anyio


async def _agent(home: LettaHome) -> str:
    return await sdk.create_agent(model=home.model)


async def test_can_use_tool_allow_runs_the_tool(letta_home: LettaHome, transport: str) -> None:
    asked: list[tuple[str, dict[str, Any]]] = []

    async def allow(tool_name: str, tool_input: dict[str, Any]) -> sdk.PermissionResult:
        asked.append((tool_name, tool_input))
        return sdk.PermissionAllow()

    target = letta_home.workdir / "allowed.txt"
    async with sdk.create_session(await _agent(letta_home), can_use_tool=allow) as session:
        await session.send(f"run: echo yes > {target} && cat {target}")
        messages = [m async for m in session.stream()]
    assert asked == [
        (
            "Bash",
            {"command": f"echo yes > {target} && cat {target}", "description": "Run a command"},
        )
    ]
    assert target.read_text() == "yes\n"
    calls = [m for m in messages if m.type == "tool_call"]
    results = [m for m in messages if m.type == "tool_result"]
    assert calls[0].tool_name == "Bash"
    assert results[0].content.strip() == "yes" and not results[0].is_error
    assert messages[-1].type == "result" and messages[-1].result == "Tool result: yes"


async def test_can_use_tool_deny_does_not_run_it(letta_home: LettaHome, transport: str) -> None:
    target = letta_home.workdir / "denied.txt"

    def deny(tool_name: str, tool_input: dict[str, Any]) -> sdk.PermissionResult:
        return sdk.PermissionDeny(message="Not today.")

    async with sdk.create_session(await _agent(letta_home), can_use_tool=deny) as session:
        result = await session.run_turn(f"run: echo no > {target}")
    assert not target.exists()
    assert result.success
    assert "Not today." in (result.result or "")


async def test_can_use_tool_updated_input(letta_home: LettaHome, transport: str) -> None:
    wanted = letta_home.workdir / "wanted.txt"
    replaced = letta_home.workdir / "replaced.txt"

    def redirect(tool_name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
        return {
            "behavior": "allow",
            "updated_input": {**tool_input, "command": f"echo swapped > {replaced}"},
        }

    async with sdk.create_session(await _agent(letta_home), can_use_tool=redirect) as session:
        await session.run_turn(f"run: echo original > {wanted}")
    assert not wanted.exists()
    assert replaced.read_text() == "swapped\n"


async def test_without_handler_default_mode_never_runs_writes(
    letta_home: LettaHome, transport: str
) -> None:
    target = letta_home.workdir / "unasked.txt"
    async with sdk.create_session(await _agent(letta_home)) as session:
        result = await session.run_turn(f"run: echo x > {target}")
    assert not target.exists()
    assert "needs approval" in (result.result or "")


async def test_bypass_permissions_runs_without_asking(
    letta_home: LettaHome, transport: str
) -> None:
    target = letta_home.workdir / "bypass.txt"
    asked: list[str] = []
    async with sdk.create_session(
        await _agent(letta_home),
        permission_mode="bypassPermissions",
        can_use_tool=lambda name, args: asked.append(name) or sdk.PermissionDeny(),
    ) as session:
        await session.run_turn(f"run: echo free > {target}")
    assert target.read_text() == "free\n"
    assert asked == []


async def test_cwd_is_where_tools_run(
    letta_home: LettaHome, transport: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    async with sdk.create_session(
        await _agent(letta_home), cwd=project, permission_mode="bypassPermissions"
    ) as session:
        result = await session.run_turn("run: pwd")
    assert result.result == f"Tool result: {project}"


async def test_disallowed_tools_never_run(letta_home: LettaHome, transport: str) -> None:
    target = letta_home.workdir / "blocked.txt"
    async with sdk.create_session(
        await _agent(letta_home),
        permission_mode="bypassPermissions",
        disallowed_tools=["Bash"],
    ) as session:
        result = await session.run_turn(f"run: echo x > {target}")
    assert not target.exists()
    assert result.success


async def test_allowed_tools_run_without_asking(letta_home: LettaHome, transport: str) -> None:
    """allowed_tools are pre-approved (the CLI's --allowedTools rules); others still ask."""
    target = letta_home.workdir / "pre-approved.txt"
    asked: list[str] = []

    def ask(name: str, tool_input: dict[str, Any]) -> sdk.PermissionResult:
        asked.append(name)
        return sdk.PermissionDeny()

    async with sdk.create_session(
        await _agent(letta_home), allowed_tools=["Bash"], can_use_tool=ask
    ) as session:
        await session.run_turn(f"run: echo x > {target}")
        assert target.read_text() == "x\n"
        assert asked == []
        other = letta_home.workdir / "other.txt"
        await session.run_turn(f"write {other}: hello")
    assert asked == ["Write"]
    assert not other.exists()


async def test_custom_python_tool_is_called(
    letta_home: LettaHome, transport: str, scripted_model: Any
) -> None:
    from lettabot.testing.scripted_model import Reply

    calls: list[dict[str, Any]] = []

    @sdk.tool("add_numbers", "Add two numbers", {"a": int, "b": int})
    async def add_numbers(args: dict[str, Any]) -> str:
        calls.append(args)
        return str(args["a"] + args["b"])

    scripted_model.on("add 2 and 3", Reply.tool("add_numbers", a=2, b=3))
    async with sdk.create_session(
        await _agent(letta_home),
        tools=[add_numbers],
        can_use_tool=lambda n, i: sdk.PermissionAllow(),
    ) as session:
        result = await session.run_turn("please add 2 and 3")
    assert calls == [{"a": 2, "b": 3}]
    assert result.result == "Tool result: 5"
    assert "add_numbers" in scripted_model.requests[0].tool_names


def _cli_pid(session: sdk.Session) -> int:
    """The process that runs this session's conversation (its CLI, or the App Server)."""
    from lettabot.sdk._internal.app_server.pool import shared_slots

    process = getattr(session._transport, "_process", None)
    if process is not None:
        return int(process.pid)
    [pid] = [s.server.pid for s in shared_slots() if s.server is not None and s.server.alive()]
    assert pid is not None
    return int(pid)


async def test_a_prompt_open_when_the_cli_dies_is_cancelled_at_once(
    letta_home: LettaHome, transport: str
) -> None:
    """The permission callback learns at once that its answer can no longer be delivered
    (request.signal), and the turn ends with an error instead of waiting for the callback."""
    import os
    import signal

    import anyio

    seen: list[sdk.CanUseToolRequest] = []
    asked = anyio.Event()

    async def wait_forever(name: str, args: dict[str, Any],
                           request: sdk.CanUseToolRequest) -> sdk.PermissionResult:
        seen.append(request)
        asked.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    target = letta_home.workdir / "never.txt"
    async with sdk.create_session(await _agent(letta_home), can_use_tool=wait_forever) as session:
        await session.send(f"run: echo x > {target}")
        messages: list[Any] = []

        async def consume() -> None:
            messages.extend([m async for m in session.stream()])

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            with anyio.fail_after(60):
                await asked.wait()
            os.kill(_cli_pid(session), signal.SIGKILL)
            with anyio.fail_after(5):
                await seen[0].signal.wait()
    assert seen[0].signal.cancelled and seen[0].signal.reason
    result = messages[-1]
    assert result.type == "result" and not result.success
    assert not target.exists()
