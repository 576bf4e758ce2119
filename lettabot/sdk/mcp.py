"""MCP servers as the agent's tools, run by the SDK with the official ``mcp`` package.

::

    files = McpStdioServer(name="files", command="uvx", args=["mcp-server-filesystem", "."])
    docs = McpHttpServer(name="docs", url="https://mcp.example.com/mcp",
                         headers={"Authorization": "Bearer ..."})
    async with create_session(agent, mcp_servers=[files, docs]) as session: ...

When the session opens, the SDK connects every server, lists its tools and gives them
to the agent as custom tools named ``mcp__<server>__<tool>`` (the CLI's own naming).
The CLI asks ``can_use_tool`` before each call, like for any tool; :meth:`Session.mcp_tool
<lettabot.sdk.Session.mcp_tool>` tells whether a tool says it is read-only. A server that
dies or does not answer within ``call_timeout`` gives the model an error result and is
restarted (with backoff); closing the session stops every server it started.

``command_prefix`` runs a stdio server through a wrapper (a sandbox such as
bubblewrap): the process started is ``[*command_prefix, command, *args]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "McpHttpServer",
    "McpServer",
    "McpServerState",
    "McpStdioServer",
    "McpToolInfo",
]

_NAME = r"^[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*$"


class _Server(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(pattern=_NAME, max_length=32)
    """Short name (letters, digits, single ``_`` or ``-`` between them, so no tool name
    is two servers'): the tools are ``mcp__<name>__<tool>``."""
    connect_timeout: float = Field(default=30.0, gt=0)
    """Seconds to start (or reach) the server and list its tools."""
    call_timeout: float = Field(default=120.0, gt=0)
    """Seconds one tool call may take; then the model gets an error and the server is
    restarted."""
    restart_backoff: tuple[float, float] = (0.5, 30.0)
    """The first and the longest wait between restarts of a server that keeps failing."""
    on_state: Callable[[McpServerState], None] | None = Field(default=None, exclude=True,
                                                              repr=False)
    """Called (in the session's event loop) whenever the server connects, with its tools,
    or is lost."""


class McpStdioServer(_Server):
    """A server the SDK starts as a process and talks to over stdin/stdout."""

    type: Literal["stdio"] = "stdio"
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    """Its environment on top of a minimal one (PATH, HOME, USER, LOGNAME, SHELL, TERM):
    nothing else of this process's environment reaches it."""
    cwd: Path | None = None
    command_prefix: list[str] = Field(default_factory=list)
    """A wrapper to start it through (e.g. a sandbox): the process is
    ``[*command_prefix, command, *args]``."""

    def argv(self) -> list[str]:
        return [*self.command_prefix, self.command, *self.args]


class McpHttpServer(_Server):
    """A server reached over the streamable HTTP transport."""

    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    """Sent with every request (e.g. ``Authorization``)."""


McpServer = Annotated[McpStdioServer | McpHttpServer, Field(discriminator="type")]


class McpToolInfo(BaseModel):
    """One tool of an MCP server, as the agent sees it."""

    model_config = ConfigDict(frozen=True)

    server: str
    name: str
    """The server's own name for it."""
    tool_name: str
    """What the agent calls it: ``mcp__<server>__<name>`` (normalised)."""
    description: str = ""
    read_only: bool = False
    """The server marks it read-only (``readOnlyHint``). A claim, not a guarantee: trust
    it only for servers you trust."""
    input_schema: dict[str, Any] = Field(default_factory=dict)


class McpServerState(BaseModel):
    """Where one MCP server of a session stands."""

    model_config = ConfigDict(frozen=True)

    name: str
    type: Literal["stdio", "http"]
    connected: bool
    tools: list[McpToolInfo] = Field(default_factory=list)
    """Its tools as listed when the session opened (the agent's tools are fixed then)."""
    error: str | None = None
    """Why it is not connected (the last failure)."""
    restarts: int = 0


for _model in (_Server, McpStdioServer, McpHttpServer):
    _model.model_rebuild()
