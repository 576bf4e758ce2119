"""An isolated Letta CLI home: the local backend, connected to a model server.

The CLI keeps its state under ``$HOME/.letta`` (settings, providers, agents,
conversations, memfs). A :class:`LettaHome` prepares such a folder once with the real
CLI (``letta backend local`` and ``letta connect openai-compatible``) and copies it
cheaply for each test, so every test starts from a clean, connected CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LettaHome", "prepare_template"]


def _letta_cli() -> str:
    from lettabot.sdk.cli import find_cli

    return find_cli()


def prepare_template(root: Path, base_url: str, *, cli: str | None = None) -> Path:
    """Run the real CLI once to make a home connected to ``base_url``; return it."""
    cli = cli or _letta_cli()
    home = root / "home"
    (home / "work").mkdir(parents=True, exist_ok=True)
    env = _env_for(home, os.environ)
    for args in (
        ["backend", "local"],
        ["connect", "openai-compatible", "--base-url", base_url],
    ):
        done = subprocess.run(
            [cli, *args], env=env, cwd=home, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"letta {' '.join(args)} failed: {done.stderr or done.stdout}")
    return home


def _env_for(home: Path, base: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env["HOME"] = str(home)
    env["LETTA_LOCAL_BACKEND_DIR"] = str(home / ".letta" / "lc-local-backend")
    env.pop("LETTA_API_KEY", None)
    env.pop("LETTA_BASE_URL", None)
    return env


@dataclass
class LettaHome:
    """A ready CLI home. ``env`` holds the variables that select it."""

    path: Path
    model: str = "openai-compatible/scripted"
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def copy_of(cls, template: Path, dest: Path, *, model: str) -> LettaHome:
        shutil.copytree(template, dest, symlinks=True)
        home = cls(dest, model)
        home.env = {
            "HOME": str(dest),
            "LETTA_LOCAL_BACKEND_DIR": str(dest / ".letta" / "lc-local-backend"),
        }
        return home

    @property
    def workdir(self) -> Path:
        """A scratch project folder inside the home (the default ``cwd`` for tests)."""
        return self.path / "work"

    @property
    def backend_dir(self) -> Path:
        return Path(self.env["LETTA_LOCAL_BACKEND_DIR"])

    def memory_dir(self, agent_id: str) -> Path:
        """The agent's memfs folder (a git repository) on the local backend."""
        return self.backend_dir / "memfs" / agent_id / "memory"
