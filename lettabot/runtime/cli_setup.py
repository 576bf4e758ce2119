"""How the Letta CLI runs for a config: its options and home, the tool sandbox it runs
in, the tool guard, and the SDK client that owns its App Servers.

Everything here is read from the :class:`~lettabot.runtime.config.Config`; nothing goes
through ``os.environ`` of the CLI (that would reach every CLI process and so the
agent's tools).
"""

from __future__ import annotations

import logging
import os
from contextlib import suppress
from pathlib import Path
from typing import Any

from lettabot import sdk
from lettabot.runtime.config import Config, ConfigError, LettaConfig, Problem
from lettabot.runtime.conversations import available_transport
from lettabot.runtime.sandbox import Sandbox, SandboxUnavailable, prepare
from lettabot.runtime.store import sqlite_path
from lettabot.runtime.tool_guard import ToolGuard

__all__ = ["cli_home", "cli_options", "letta_client", "protected_paths", "session_options",
           "tool_guard", "tool_sandbox"]

log = logging.getLogger("lettabot.runtime")


def protected_paths(config: Config) -> list[Path]:
    """lettabot's own state, which no tool call reads without an approver's click."""
    paths = [config.data_dir, Path.cwd() / ".env"]
    if config.config_file is not None:
        paths += [config.config_file, config.config_file.parent / ".env"]
    database = sqlite_path(config.store_url)
    if database is not None:
        paths.append(database)
    return paths


def tool_guard(config: Config, letta: LettaConfig | None = None) -> ToolGuard:
    """The guard for ``config`` (and one agent's ``letta`` settings): its permission mode,
    workspace, protected paths and the CLI's home."""
    letta = letta or config.letta
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LETTA_LOCAL_BACKEND_DIR")}
    env.update(letta.env)
    return ToolGuard.build(letta.permission_mode, config.letta_cwd,
                           protected_paths(config), env=env)


def cli_home(config: Config) -> tuple[Path, Path | None]:
    """The CLI's ``HOME`` and ``LETTA_LOCAL_BACKEND_DIR`` (None: the default under HOME)."""
    env = {**os.environ, **config.letta.env}
    backend = env.get("LETTA_LOCAL_BACKEND_DIR")
    return Path(env.get("HOME") or Path.home()), Path(backend) if backend else None


def tool_sandbox(config: Config) -> Sandbox | None:
    """Write the sandbox launchers for ``config`` (None with ``[sandbox] mode = "off"``).

    Raises :class:`ConfigError` (``sandbox.mode``: what failed, how to fix it) where
    bubblewrap cannot start: never a silent fallback to running tools unsandboxed."""
    if config.sandbox.mode == "off":
        log.warning("[sandbox] mode = \"off\": the agent's tools run as lettabot's user and "
                    "can read whatever it can (provider keys in the Letta home, other "
                    "conversations); only the approval guard stands in the way")
        return None
    home, backend = cli_home(config)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache / "lettabot" / "node-compile-cache"
    with suppress(OSError):
        cache.mkdir(parents=True, exist_ok=True)
    try:
        return prepare(config.sandbox, config.data_dir / "sandbox",
                       workspaces=config.letta_cwd, home=home, backend=backend,
                       secret=protected_paths(config),
                       extra_rw=[cache, *_compile_cache(config)],
                       git_network=config.letta.backend == "cloud")
    except SandboxUnavailable as exc:
        raise ConfigError([Problem("sandbox.mode", exc.why, exc.fix)]) from None


def _compile_cache(config: Config) -> list[Path]:
    """``NODE_COMPILE_CACHE`` as the CLI will get it (a cache: mounted writable)."""
    where = config.letta.env.get("NODE_COMPILE_CACHE") or os.environ.get("NODE_COMPILE_CACHE")
    return [Path(where)] if where else []


def cli_options(config: Config) -> dict[str, Any]:
    """Which CLI runs, and its extra environment (backend URL and key): SDK options."""
    letta = config.letta
    options: dict[str, Any] = {}
    if letta.cli_path:
        options["cli_path"] = letta.cli_path
    env: dict[str, str] = dict(letta.env)
    if letta.backend == "cloud":
        if letta.base_url:
            env["LETTA_BASE_URL"] = letta.base_url
        if letta.api_key is not None:
            env["LETTA_API_KEY"] = letta.api_key.get_secret_value()
    if env:
        options["env"] = env
    return options


def session_options(config: Config, permission_mode: str,
                    sandbox: Sandbox | None) -> dict[str, Any]:
    """The SDK session options every conversation of ``config`` opens with."""
    cwd = config.letta_cwd
    cwd.mkdir(parents=True, exist_ok=True)
    options = {"permission_mode": permission_mode, "include_partial_messages": True,
               "cwd": cwd, **cli_options(config)}
    if sandbox is not None:
        options["cli_path"] = str(sandbox.cli_path)
    return options


def letta_client(config: Config, options: dict[str, Any]) -> sdk.LettaClient:
    """The SDK client: ``servers.count`` local App Servers plus ``servers.urls``, and the
    named ``[[hosts]]`` (outside the spread), with where and how the CLI runs (from the
    session ``options``)."""
    where = {k: v for k, v in options.items() if k in ("cwd", "cli_path", "env")}
    transport = available_transport()
    if transport:
        where["transport"] = transport
    servers = config.servers
    return sdk.LettaClient(servers=servers.count,
                           urls=[(u.url, u.token) for u in servers.urls],
                           hosts={h.name: (h.url, h.token) for h in config.hosts}, **where)
