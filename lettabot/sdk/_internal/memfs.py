"""Agent memory as files: the CLI's memfs (a git repository of markdown files).

CLI 0.34 has no flag for memory blocks or block values. Root files of the memory folder
(``persona.md``, ``human.md``, ...; front matter ``name`` and ``description``, then the
value) are projected into the system prompt as ``<label>`` blocks, but only once they are
committed. So a block is written as a file and committed, which is what the agent itself
does when it edits its memory.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import anyio

from lettabot.sdk.errors import LettaSDKError
from lettabot.sdk.options import MEMORY_PRESETS, AgentOptions, MemoryBlock

__all__ = ["APPEND_LABEL", "apply_agent_memory", "local_backend_dir", "memory_dir"]

APPEND_LABEL = "instructions"
_DESCRIPTIONS = {
    "persona": "Who I am and how I behave.",
    "human": "What I know about the people I work with.",
    "project": "The project I am working on.",
    APPEND_LABEL: "Standing instructions from the person who configured me.",
}


def local_backend_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the CLI with environment ``env`` (default ours) keeps local-backend agents."""
    env = env if env is not None else os.environ
    backend = env.get("LETTA_LOCAL_BACKEND_DIR") or str(
        Path(env.get("HOME") or Path.home()) / ".letta" / "lc-local-backend"
    )
    return Path(backend)


def memory_dir(agent_id: str, env: Mapping[str, str] | None = None) -> Path:
    """The memory folder of a local-backend agent."""
    return local_backend_dir(env) / "memfs" / agent_id / "memory"


def _file_text(block: MemoryBlock) -> str:
    description = block.description or _DESCRIPTIONS.get(block.label, f"The {block.label} block.")
    name = block.label.replace("_", " ").title()
    return f"---\nname: {name}\ndescription: {description}\n---\n{block.value.rstrip()}\n"


def _git(folder: Path, *args: str) -> None:
    done = subprocess.run(
        ["git", "-c", "user.name=lettabot", "-c", "user.email=lettabot@localhost", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        raise LettaSDKError(f"git {' '.join(args)} in {folder} failed: {done.stderr.strip()}")


def _apply(folder: Path, options: AgentOptions) -> bool:
    if not (folder / ".git").exists():
        raise LettaSDKError(
            f"the agent's memory folder {folder} is not a git repository; memory options need "
            "the local backend with memfs"
        )
    if options.block_refs():
        raise LettaSDKError(
            "memory block references ({'block_id': ...}) need a Letta server backend; "
            "the local backend keeps memory as files"
        )
    changed = False
    if options.memory is not None:
        # Presets left out of `memory` are removed, so `memory=[]` means no blocks.
        wanted = {i if isinstance(i, str) else getattr(i, "label", "") for i in options.memory}
        for name in MEMORY_PRESETS:
            path = folder / f"{name}.md"
            if name not in wanted and path.exists():
                path.unlink()
                changed = True
    blocks = options.blocks()
    preset = options.preset
    if preset is not None and preset.append:
        blocks.append(MemoryBlock(label=APPEND_LABEL, value=preset.append))
    for block in blocks:
        (folder / f"{block.label}.md").write_text(_file_text(block), encoding="utf-8")
        changed = True
    if changed:
        _git(folder, "add", "-A")
        _git(folder, "commit", "-q", "--allow-empty", "-m", "lettabot: configure memory blocks")
    return changed


async def apply_agent_memory(
    agent_id: str, options: AgentOptions, env: Mapping[str, str] | None = None
) -> bool:
    """Write the options' memory blocks into a new agent's memfs and commit them."""
    folder = memory_dir(agent_id, env)
    return await anyio.to_thread.run_sync(_apply, folder, options)
