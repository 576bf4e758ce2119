"""Finding the ``letta`` CLI and preparing its environment."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from lettabot.sdk.errors import CLINotFoundError

__all__ = ["cli_env", "find_cli", "is_agent_id", "is_conversation_id"]


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


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CLI's environment: ours, plus the caller's extras, plus a Node compile cache."""
    env = dict(os.environ)
    env.update(extra or {})
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
