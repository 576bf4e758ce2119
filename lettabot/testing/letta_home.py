"""An isolated Letta CLI home: the local backend, connected to a model server.

The CLI keeps its state under ``$HOME/.letta`` (settings, providers, agents,
conversations, memfs). A :class:`LettaHome` prepares such a folder once with the real
CLI (``letta backend local`` and ``letta connect openai-compatible``) and copies it
cheaply for each test, so every test starts from a clean, connected CLI.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lettabot.runtime.demo_model import prepare_template

__all__ = ["LettaHome", "prepare_template"]


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
