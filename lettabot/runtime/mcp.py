"""MCP servers of each agent (``mcp_servers`` in ``[letta]`` / ``[[agents]]``), given to
its sessions through the SDK (:mod:`lettabot.sdk.mcp`).

- A stdio server is started per conversation, in a bubblewrap sandbox that sees the
  system read-only, the conversation's own scope folder (its working folder) and the
  configured ``read_paths``, nothing of lettabot's state; its environment is only its
  configured ``env``. With ``[sandbox] mode = "off"`` it runs unsandboxed in the scope
  folder.
- Every call asks for approval through the broker, like any tool (the CLI sends
  ``can_use_tool`` for custom tools too). Only a tool a ``trusted`` server marks read-only
  (``readOnlyHint``) runs without a click (:class:`McpTrust`, consulted by
  :class:`~lettabot.runtime.approvals.ToolPolicy`), and never in ``strict`` mode or in a
  tainted turn.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from lettabot import sdk
from lettabot.runtime.config import McpServerConfig, SandboxConfig
from lettabot.runtime.sandbox.bwrap import mask_args, system_args

__all__ = ["McpServers", "McpTrust", "sandbox_prefix"]

log = logging.getLogger("lettabot.runtime.mcp")


class McpTrust:
    """One agent's MCP servers as last seen, and which of their tools run without a click."""

    def __init__(self, servers: Iterable[McpServerConfig]) -> None:
        self.configured = list(servers)
        self._trusted = {s.name for s in self.configured if s.trusted}
        self._read_only: dict[str, str] = {}
        self.states: dict[str, sdk.McpServerState] = {}
        """The last state any session reported for each server."""

    def record(self, state: sdk.McpServerState) -> None:
        """A session's server connected (with its tools) or was lost."""
        self.states[state.name] = state
        if state.name not in self._trusted:
            return
        for tool in state.tools:
            if tool.read_only:
                self._read_only[tool.tool_name] = state.name
            else:
                self._read_only.pop(tool.tool_name, None)

    def read_only(self, tool_name: str) -> str | None:
        """Why ``tool_name`` runs without a click, or None."""
        server = self._read_only.get(tool_name)
        if server is None:
            return None
        return f"marked read-only by the trusted MCP server {server}"


def sandbox_prefix(bwrap: str, folder: Path, *, read_paths: Iterable[Path],
                   secret: Iterable[Path], network: bool) -> list[str]:
    """bubblewrap's command line for a stdio server working in ``folder``: the system
    read-only, ``folder`` writable, ``read_paths`` read-only, ``secret`` covered, its own
    namespaces (network only if ``network``), ``HOME`` an empty folder."""
    folder = folder.resolve()
    readable = [p.resolve() for p in read_paths if p.exists()]
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-all"]
    if network:
        args.append("--share-net")
    args += system_args()
    for path in readable:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(folder), str(folder)]
    args += mask_args(secret, [folder, *readable])
    args += ["--dir", "/tmp/home", "--setenv", "HOME", "/tmp/home", "--chdir", str(folder),
             "--"]
    return args


class McpServers:
    """Builds each session's MCP servers (SDK options) and keeps each agent's trust."""

    def __init__(self, sandbox: SandboxConfig, *, sandboxed: bool,
                 secret: Iterable[Path] = ()) -> None:
        self._sandbox = sandbox
        self._bwrap = shutil.which("bwrap") if sandboxed else None
        if sandboxed and self._bwrap is None:
            raise RuntimeError("bubblewrap is needed for sandboxed MCP servers")
        self._secret = list(secret)
        self._trust: dict[str, McpTrust] = {}

    def trust(self, agent: str, servers: Iterable[McpServerConfig]) -> McpTrust:
        """The :class:`McpTrust` of the agent named ``agent`` (made once)."""
        if agent not in self._trust:
            self._trust[agent] = McpTrust(servers)
        return self._trust[agent]

    def for_session(self, agent: str, folder: Path | None) -> list[sdk.McpServer]:
        """The SDK servers for a new session of ``agent`` working in the scope ``folder``
        (None: a session with no scope yet, which gets none)."""
        trust = self._trust.get(agent)
        if trust is None or folder is None:
            return []
        return [self._server(config, folder, trust) for config in trust.configured]

    def _server(self, config: McpServerConfig, folder: Path,
                trust: McpTrust) -> sdk.McpServer:
        common = {"name": config.name, "call_timeout": config.timeout_seconds,
                  "connect_timeout": config.connect_timeout_seconds,
                  "on_state": trust.record}
        if config.url is not None:
            return sdk.McpHttpServer(url=config.url, headers={
                k: v.get_secret_value() for k, v in config.headers.items()}, **common)
        assert config.command is not None
        prefix: list[str] = []
        if self._bwrap is not None:
            network = config.network if config.network is not None \
                else self._sandbox.network == "host"
            prefix = sandbox_prefix(self._bwrap, folder, read_paths=config.read_paths,
                                    secret=self._secret, network=network)
        return sdk.McpStdioServer(command=config.command, args=list(config.args),
                                  env={k: v.get_secret_value() for k, v in config.env.items()},
                                  cwd=folder, command_prefix=prefix, **common)

    def describe(self, agent: str, session: sdk.Session | None) -> list[str]:
        """Status lines: each server of ``agent``, connected or not, and its tools (the
        scope's open session's view, else the last one seen)."""
        trust = self._trust.get(agent)
        if trust is None or not trust.configured:
            return []
        live = {s.name: s for s in session.mcp_status()} if session is not None else {}
        lines = []
        for config in trust.configured:
            state = live.get(config.name) or trust.states.get(config.name)
            kind = "stdio" if config.command else "http"
            trusted = ", trusted" if config.trusted else ""
            if state is None:
                lines.append(f"MCP server {config.name} ({kind}{trusted}): not started yet "
                             "(it starts with this conversation)")
                continue
            how = "connected" if state.connected else f"not connected ({state.error})"
            if config.name not in live:
                how = f"no open conversation here (last seen elsewhere: {how})"
            tools = ", ".join(t.name + (" (read-only)" if t.read_only else "")
                              for t in state.tools) or "none"
            lines.append(f"MCP server {config.name} ({kind}{trusted}): {how}; tools: {tools}")
        return lines
