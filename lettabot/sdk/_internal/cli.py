"""Finding the ``letta`` CLI and preparing its environment."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from lettabot.sdk.errors import CLINotFoundError

__all__ = [
    "PASSED_ENV", "cli_env", "find_cli", "is_agent_id", "is_conversation_id", "last_used_agent",
    "passes_to_cli",
]


def find_cli(explicit: str | None = None) -> str:
    """``explicit``, else ``$LETTA_CLI_PATH``, else the interpreter's own ``letta``, else PATH."""
    searched: list[str] = []
    for candidate in (explicit, os.environ.get("LETTA_CLI_PATH")):
        if candidate:
            searched.append(candidate)
            path = shutil.which(candidate)
            if path:
                return path
            raise CLINotFoundError(searched)
    beside = Path(sys.executable).parent / ("letta.exe" if os.name == "nt" else "letta")
    searched.append(str(beside))
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("letta")
    searched.append("PATH")
    if found:
        return found
    raise CLINotFoundError(searched)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lettabot" / "node-compile-cache"


PASSED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_COMPILE_CACHE",
})
"""Variables of our environment the CLI gets (plus ``LC_*`` and the CLI's own ``LETTA_*``)."""

SDK_ONLY_ENV = frozenset({"LETTA_APP_SERVER_URL", "LETTA_APP_SERVER_TOKEN", "LETTA_CLI_PATH"})
"""``LETTA_*`` variables that configure this SDK, not the CLI: never passed on."""


def passes_to_cli(name: str) -> bool:
    """Whether our environment variable ``name`` reaches the CLI (and so its tools)."""
    if name in SDK_ONLY_ENV:
        return False
    return name in PASSED_ENV or name.startswith(("LC_", "LETTA_"))


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CLI's environment: a minimal part of ours, the caller's extras, a compile cache.

    The CLI's tools inherit it, and read-only commands such as ``printenv`` run without
    asking in ``standard`` mode, so nothing else of our environment (chat tokens, database
    URLs, provider keys) is passed: give the CLI what it needs through ``extra``
    (``SessionOptions.env``; an empty value there removes the variable).
    """
    env = {k: v for k, v in os.environ.items() if passes_to_cli(k)}
    for key, value in (extra or {}).items():
        if value == "":
            env.pop(key, None)  # an empty extra unsets the variable
        else:
            env[key] = value
    if not env.get("NODE_COMPILE_CACHE"):
        cache = _cache_dir()
        try:
            cache.mkdir(parents=True, exist_ok=True)
            env["NODE_COMPILE_CACHE"] = str(cache)
        except OSError:
            pass  # a read-only home only costs start-up time
    env.setdefault("NO_COLOR", "1")
    return env


def is_agent_id(value: str) -> bool:
    """``agent-<uuid>`` (cloud) or ``agent-local-<uuid>`` (local backend)."""
    return value.startswith("agent-") and len(value) > len("agent-")


def is_conversation_id(value: str) -> bool:
    """``conv-<id>`` (cloud) or ``local-conv-<n>`` (local backend)."""
    return (value.startswith("conv-") and len(value) > 5) or (
        value.startswith("local-conv-") and len(value) > len("local-conv-")
    )


def last_used_agent(cwd: Path) -> str | None:
    """The folder's last-used agent, as the CLI records it (``--new`` without ``--agent``
    opens it; with none, the CLI makes a new agent)."""
    for path in (cwd / ".letta" / "settings.local.json", Path.home() / ".letta" / "settings.json"):
        try:
            value = json.loads(path.read_text()).get("lastAgent")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value:
            return value
    return None
