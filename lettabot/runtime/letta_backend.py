"""Put lettabot's Letta home on the backend ``letta.backend`` names, before the CLI starts.

On a machine where the Letta CLI never ran, its default backend is the CLI's cloud one, so an
App Server started there looks for ``LETTA_API_KEY`` even after a provider was connected
locally ("Missing LETTA_API_KEY"). ``letta backend local`` (or ``cloud``) saves the default in
``$HOME/.letta/settings.json`` (``"preferredBackendMode": "local"`` or ``"api"``), keeping the
rest of the file. lettabot runs that command itself, as the CLI would, in the home the CLI
will use — only when the saved default differs, so a start on a ready home costs one file
read, and running it again changes nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio

from lettabot.runtime.config import Config, ConfigError, Problem
from lettabot.sdk import LettaSDKError, cli_env, find_cli

__all__ = ["ensure_backend", "saved_backend"]

log = logging.getLogger("lettabot.runtime.letta_backend")

_SAVED = {"local": "local", "cloud": "api"}
"""``letta.backend`` → what ``letta backend <it>`` saves as ``preferredBackendMode``."""


def saved_backend(home: Path) -> str | None:
    """``preferredBackendMode`` in ``home``'s CLI settings (None: never set, or unreadable)."""
    try:
        settings = json.loads((home / ".letta" / "settings.json").read_text())
    except (OSError, ValueError):
        return None
    mode = settings.get("preferredBackendMode") if isinstance(settings, dict) else None
    return mode if isinstance(mode, str) else None


async def ensure_backend(config: Config, *, timeout: float = 60.0) -> bool:  # noqa: ASYNC109
    """Make the CLI's saved default backend ``config.letta.backend``; True if it changed.

    Raises :class:`ConfigError` (``letta.backend``) if the CLI cannot be found or refuses.
    """
    backend = config.letta.backend
    env = cli_env(config.letta.env)
    home = Path(env.get("HOME") or Path.home())
    was = saved_backend(home)
    if was == _SAVED[backend]:
        return False
    try:
        cli = find_cli(config.letta.cli_path)
        with anyio.fail_after(timeout):
            done = await anyio.run_process([cli, "backend", backend], env=env, cwd=home,
                                           check=False)
    except (OSError, TimeoutError, LettaSDKError) as exc:
        raise _problem(backend, home, str(exc) or exc.__class__.__name__) from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).decode(errors="replace").strip()[-300:]
        raise _problem(backend, home, why or f"exit status {done.returncode}")
    log.info("Letta home %s: default backend set to %s (was %s)", home, backend,
             {"api": "cloud", None: "not set: the CLI's cloud default"}.get(was, was))
    return True


def _problem(backend: str, home: Path, why: str) -> ConfigError:
    return ConfigError([Problem(
        "letta.backend", f"could not set the Letta home {home} to the {backend} backend "
        f"(`letta backend {backend}`: {why})",
        f"run `letta backend {backend}` once as lettabot's user (HOME={home})")])
