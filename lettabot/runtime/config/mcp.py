"""``mcp_servers`` of ``[letta]`` and of each ``[[agents]]``: MCP servers whose tools
become the agent's (see docs/operate.md, "MCP servers")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from lettabot.runtime.config.base import Section
from lettabot.runtime.config.problems import Problem

__all__ = ["McpServerConfig"]


class McpServerConfig(Section):
    """One MCP server: a program lettabot starts (``command``, over stdio, in the tool
    sandbox with the conversation's folder) or a URL it reaches (streamable HTTP). Its
    tools are ``mcp__<name>__<tool>``; every call asks for approval like any tool, except
    the tools a ``trusted`` server marks read-only."""

    name: str = Field(pattern=r"^[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*$", max_length=32,
                      examples=["docs"])
    """Short name (letters and digits, single ``_`` or ``-`` between them): the tools are
    ``mcp__<name>__<tool>``."""
    command: str | None = Field(default=None, examples=["uvx"])
    """The program of a stdio server (found on PATH inside the sandbox)."""
    args: list[str] = Field(default_factory=list,
                            examples=[["mcp-server-fetch"]])
    """Its arguments."""
    env: dict[str, SecretStr] = Field(default_factory=dict, repr=False,
                                      examples=[{"API_TOKEN": "..."}])
    """The stdio server's environment: only these variables (plus PATH, HOME, USER,
    LOGNAME, SHELL, TERM) — nothing else of lettabot's environment reaches it."""
    read_paths: list[Path] = Field(default_factory=list,
                                   examples=[["/opt/mcp/venv"]])
    """Folders the sandboxed stdio server may read besides the system and the
    conversation's folder (its installation, e.g. a virtualenv or node_modules)."""
    network: bool | None = Field(default=None, examples=[True])
    """Whether the sandboxed stdio server may reach the network. Unset: ``sandbox.network``."""
    url: str | None = None
    """The endpoint of a streamable-HTTP server (instead of ``command``), e.g.
    ``"http://127.0.0.1:8931/mcp"``."""
    headers: dict[str, SecretStr] = Field(default_factory=dict, repr=False)
    """HTTP headers sent with every request, e.g. ``{ Authorization = "Bearer ..." }``."""
    trusted: bool = False
    """Believe the server's ``readOnlyHint``: the tools it marks read-only run without a
    click (except in ``strict`` mode, and in turns quoting people who may not talk to the
    bot). Leave false for servers you do not control."""
    timeout_seconds: float = Field(default=120.0, gt=0)
    """How long one call may take; then the agent gets an error and the server is
    restarted."""
    connect_timeout_seconds: float = Field(default=30.0, gt=0)
    """How long starting (or reaching) the server and listing its tools may take."""

    @property
    def type(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command else "http"

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = []
        if bool(self.command) == bool(self.url):
            problems.append(Problem("command", "and url are both set" if self.command
                                    else "and url are both unset",
                                    "give command (a stdio server) or url (an HTTP server)"))
        if self.url and not re.match(r"^https?://[^/]+", self.url):
            problems.append(Problem("url", "is not an http(s) URL",
                                    "write http://host:port/mcp"))
        if self.url and (self.args or self.env or self.read_paths):
            problems.append(Problem("url", "is set together with args, env or read_paths",
                                    "those are for stdio servers (command); remove them"))
        if self.command and self.headers:
            problems.append(Problem("headers", "are set for a stdio server",
                                    "headers are for HTTP servers (url); use env instead"))
        return self.raise_problems(problems)


def check_unique(servers: list[McpServerConfig]) -> list[Problem]:
    """Two servers with one name would give the agent clashing tools."""
    seen: set[str] = set()
    problems = []
    for server in servers:
        if server.name in seen:
            problems.append(Problem("mcp_servers", f"name {server.name!r} is used twice",
                                    "give every MCP server its own name"))
        seen.add(server.name)
    return problems
