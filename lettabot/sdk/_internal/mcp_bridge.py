"""MCP servers bridged into a session's custom tools (see :mod:`lettabot.sdk.mcp`).

Each server is a :class:`ServerLink`: one *host task* holds its client (the ``mcp``
package's transport and ``ClientSession`` keep task groups that must be entered and left
in one task, while sessions call tools and close from any task). The host connects,
lists the tools, then waits until the link is lost (a call failed or timed out) or
stopped; leaving the ``stdio_client`` context stops and reaps the process. After a loss
it reconnects with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import tempfile
from typing import IO, Any, TextIO, cast

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CONNECTION_CLOSED, CallToolResult
from mcp.types import Tool as McpTool

from lettabot.sdk.mcp import McpHttpServer, McpServerState, McpStdioServer, McpToolInfo
from lettabot.sdk.tools import Tool, ToolResult

__all__ = ["McpHub", "ServerLink", "tool_name"]

log = logging.getLogger("lettabot.sdk.mcp")

_MAX_NAME = 64  # what model APIs accept for a function name


def _normal(value: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", value)


def tool_name(server: str, tool: str) -> str:
    """``mcp__<server>__<tool>`` as the CLI spells it, cut to 64 characters (a digest
    keeps cut names apart)."""
    name = f"mcp__{_normal(server)}__{_normal(tool)}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:_MAX_NAME - 9]}_{digest}"


def _info(server: str, tool: McpTool) -> McpToolInfo:
    hints = tool.annotations
    return McpToolInfo(
        server=server, name=tool.name, tool_name=tool_name(server, tool.name),
        description=tool.description or tool.title or "",
        read_only=bool(hints is not None and hints.read_only_hint is True),
        input_schema=dict(tool.input_schema or {"type": "object", "properties": {}}))


def _result(result: CallToolResult) -> ToolResult:
    parts: list[dict[str, Any]] = []
    for item in result.content:
        kind = getattr(item, "type", None)
        if kind == "text":
            parts.append({"type": "text", "text": str(getattr(item, "text", ""))})
        elif kind in ("image", "audio"):
            parts.append({"type": "text", "text": f"[{kind} {getattr(item, 'mime_type', '')}]"})
        elif kind == "resource":
            resource = getattr(item, "resource", None)
            text = getattr(resource, "text", None)
            parts.append({"type": "text", "text": str(text) if text is not None
                          else f"[resource {getattr(resource, 'uri', '')}]"})
        else:
            parts.append({"type": "text", "text": item.model_dump_json()})
    if not parts and result.structured_content is not None:
        parts.append({"type": "text", "text": json.dumps(result.structured_content)})
    if not parts:
        parts.append({"type": "text", "text": "(no output)"})
    return ToolResult(content=parts, is_error=bool(result.is_error))


class _Lost(Exception):
    """The link broke; the message says how."""


class ServerLink:
    """One MCP server of a session: connected by a host task, restarted when lost."""

    def __init__(self, server: McpStdioServer | McpHttpServer) -> None:
        self.server = server
        self.tools: list[McpToolInfo] = []
        """As first listed: the agent's tools are fixed when the session opens."""
        self.error: str | None = None
        self.restarts = 0
        self._session: ClientSession | None = None
        self._lost = anyio.Event()
        self._stop = anyio.Event()
        self._changed = anyio.Event()
        self._first = anyio.Event()
        self._host: asyncio.Task[None] | None = None
        self._listed = False
        self._was_up = False

    # -- state --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._session is not None

    def state(self) -> McpServerState:
        return McpServerState(name=self.server.name, type=self.server.type,
                              connected=self.connected, tools=list(self.tools),
                              error=self.error, restarts=self.restarts)

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()
        if self.server.on_state is not None:
            try:
                self.server.on_state(self.state())
            except Exception:
                log.exception("on_state of MCP server %s failed", self.server.name)

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Start the host task; returns once the first attempt connected or failed."""
        self._host = asyncio.get_running_loop().create_task(self._run())
        await self._first.wait()

    async def close(self) -> None:
        """Stop the server (a stdio process is stopped and reaped); idempotent."""
        self._stop.set()
        host, self._host = self._host, None
        if host is not None:
            with anyio.CancelScope(shield=True), \
                    contextlib.suppress(asyncio.CancelledError, Exception):
                await host

    async def _run(self) -> None:
        async with anyio.create_task_group() as tg:
            async def stop_all() -> None:  # a stop cancels a connect or a backoff at once
                await self._stop.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stop_all)
            try:
                await self._attempts()
            finally:
                tg.cancel_scope.cancel()
                self._session = None
                self._first.set()

    async def _attempts(self) -> None:
        first, longest = self.server.restart_backoff
        delay = first
        while not self._stop.is_set():
            self._was_up = False
            try:
                with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
                    try:
                        await self._serve(errlog)
                    except Exception as exc:
                        self.error = _describe(exc, errlog)
                        log.warning("MCP server %s: %s", self.server.name, self.error)
            finally:
                self._session = None
                self._first.set()
                self._notify()
            if self._was_up:
                delay = first  # it ran: a new loss starts the backoff again
            await anyio.sleep(delay)
            delay = min(delay * 2, longest)
            self.restarts += 1

    async def _serve(self, errlog: IO[str]) -> None:
        self._lost = anyio.Event()
        async with contextlib.AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._transport(stack, errlog))
            session = await stack.enter_async_context(ClientSession(read, write))
            with anyio.fail_after(self.server.connect_timeout):
                await session.initialize()
                tools = await _list_tools(session)
            if not self._listed:
                self.tools = [_info(self.server.name, t) for t in tools]
                self._listed = True
            self.error = None
            self._session = session
            self._was_up = True
            self._first.set()
            self._notify()
            await self._lost.wait()
            raise _Lost(self.error or "lost")

    def _transport(self, stack: contextlib.AsyncExitStack,
                   errlog: IO[str]) -> contextlib.AbstractAsyncContextManager[Any]:
        server = self.server
        if isinstance(server, McpStdioServer):
            argv = server.argv()
            params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(server.env),
                                           cwd=server.cwd)
            return stdio_client(params, errlog=cast(TextIO, errlog))
        client = create_mcp_http_client(headers=dict(server.headers))
        stack.push_async_callback(client.aclose)
        return streamable_http_client(server.url, http_client=client)

    def _lose(self, session: ClientSession, why: str) -> None:
        if self._session is session:
            self.error = why
            self._session = None
            self._lost.set()

    # -- calls --------------------------------------------------------------------

    async def _ready(self) -> ClientSession | None:
        with anyio.move_on_after(self.server.connect_timeout):
            while self._session is None and not self._stop.is_set():
                await self._changed.wait()
        return self._session

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        """Call ``tool``; any failure is an error result naming the server and what
        happened (a lost server is restarted)."""
        name = self.server.name
        session = await self._ready()
        if session is None:
            return ToolResult.error(
                f"MCP server {name!r} is not available ({self.error or 'not connected'}); "
                "it is being restarted, try again shortly.")
        timeout = self.server.call_timeout
        try:
            with anyio.fail_after(timeout):
                result = await session.call_tool(tool, arguments)
        except TimeoutError:
            self._lose(session, f"{tool} did not answer within {timeout:g} s")
            return ToolResult.error(
                f"MCP server {name!r} did not answer {tool} within {timeout:g} s; the call "
                "was abandoned and the server is being restarted.")
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                return ToolResult.error(f"MCP server {name!r}: {exc.message}")
            self._lose(session, f"the connection closed during {tool}")
            return ToolResult.error(
                f"MCP server {name!r} stopped during {tool} (the connection closed); it "
                "is being restarted, try again shortly.")
        except Exception as exc:
            self._lose(session, f"{type(exc).__name__}: {exc}")
            return ToolResult.error(
                f"MCP server {name!r} failed during {tool} ({type(exc).__name__}: {exc}); "
                "it is being restarted, try again shortly.")
        return _result(result)


async def _list_tools(session: ClientSession) -> list[McpTool]:
    tools: list[McpTool] = []
    listing = await session.list_tools()
    tools += listing.tools
    while listing.next_cursor:
        from mcp.types import PaginatedRequestParams

        listing = await session.list_tools(params=PaginatedRequestParams(
            cursor=listing.next_cursor))
        tools += listing.tools
    return tools


def _describe(exc: BaseException, errlog: IO[str]) -> str:
    if isinstance(exc, _Lost):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0]
        text = f"{type(inner).__name__}: {inner}"
    with contextlib.suppress(OSError, ValueError):
        errlog.seek(0)
        tail = errlog.read()[-500:].strip()
        if tail:
            text += f" (stderr: {tail.splitlines()[-1]})"
    return text


class McpHub:
    """A session's MCP servers: their links and the custom tools they give the agent."""

    def __init__(self, servers: list[McpStdioServer | McpHttpServer]) -> None:
        self.links = [ServerLink(s) for s in servers]
        self.tools: dict[str, McpToolInfo] = {}

    async def start(self, taken: set[str]) -> list[Tool]:
        """Connect every server (at once); their tools, named apart from ``taken``."""
        async with anyio.create_task_group() as tg:
            for link in self.links:
                tg.start_soon(link.start)
        out: list[Tool] = []
        for link in self.links:
            if not link.connected:
                log.warning("MCP server %s is not connected (%s): its tools are missing "
                            "from this session", link.server.name, link.error)
            for info in link.tools:
                if info.tool_name in taken:
                    log.warning("MCP tool %s of %s is named like another tool; left out",
                                info.name, link.server.name)
                    continue
                taken.add(info.tool_name)
                self.tools[info.tool_name] = info
                out.append(_as_tool(link, info))
        return out

    def states(self) -> list[McpServerState]:
        return [link.state() for link in self.links]

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for link in self.links:
                    tg.start_soon(link.close)


def _as_tool(link: ServerLink, info: McpToolInfo) -> Tool:
    async def run(arguments: dict[str, Any]) -> ToolResult:
        return await link.call(info.name, arguments)

    schema = info.input_schema if info.input_schema.get("type") == "object" else {
        "type": "object", "properties": {}}
    description = info.description or info.name
    return Tool(name=info.tool_name, label=f"{info.server}: {info.name}",
                description=f"{description}\n\n(MCP server {info.server})",
                parameters=schema, handler=run)
