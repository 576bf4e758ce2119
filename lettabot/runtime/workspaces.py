"""Each chat scope's own folder: where its conversation works, its uploads land, and the
only folder of the workspace its shell commands see.

``letta.cwd`` (default ``<data_dir>/workspace``) is the root; a scope works in
``<root>/<slug>-<digest>``, a name derived from the scope key alone (stable across restarts
and replicas, no lookup). A file uploaded or written in one DM or thread is not in another's
folder, so the guard (which judges paths against the scope's folder) and the sandbox (which
mounts only that folder) keep it there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from lettabot.runtime.tool_guard import ToolGuard

__all__ = ["neutralize_permissions", "prepare_scope_dir", "scope_dir", "scoped_guard"]

log = logging.getLogger("lettabot.runtime.workspaces")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def scope_dir(root: Path, scope_key: str) -> Path:
    """The folder of the scope ``scope_key`` under ``root`` (not created)."""
    digest = hashlib.sha256(scope_key.encode()).hexdigest()[:12]
    slug = _UNSAFE.sub("_", scope_key).strip("._-")[:48] or "scope"
    return root / f"{slug}-{digest}"


def prepare_scope_dir(root: Path, scope_key: str) -> Path:
    """Create the scope's folder (mode 0700) and return its real path."""
    folder = scope_dir(root, scope_key)
    root.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    return Path(os.path.realpath(folder))


def scoped_guard(guard: ToolGuard, scope_key: str) -> ToolGuard:
    """``guard`` (built on the workspaces' root) judging paths against one scope's folder:
    a file of another DM or thread is outside it."""
    return guard.within(prepare_scope_dir(guard.workspace, scope_key))


PERMISSION_FILES = (Path(".letta") / "settings.json", Path(".letta") / "settings.local.json")
"""Where the CLI reads project settings relative to a conversation's folder (and
``settings.json`` in the Letta home)."""

RISKY_SETTINGS = ("permissions", "hooks", "statusLine")
"""Settings that would decide or run things behind lettabot's back: ``permissions.allow``
(honoured even in ``strict`` mode, no ``can_use_tool`` reaches lettabot), ``hooks`` and
``statusLine`` (commands the CLI runs itself)."""


def neutralize_permissions(folder: Path, letta_home: Path | None = None) -> list[Path]:
    """Remove :data:`RISKY_SETTINGS` from the CLI's settings files of ``folder`` (and the
    Letta home). Returns the files changed."""
    files = [folder / p for p in PERMISSION_FILES]
    if letta_home is not None:
        files.append(letta_home / "settings.json")
    changed = []
    for path in files:
        try:
            if path.is_symlink():
                path.unlink()  # the CLI would follow it anywhere
                changed.append(path)
                continue
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and any(key in data for key in RISKY_SETTINGS):
            for key in RISKY_SETTINGS:
                data.pop(key, None)
            tmp = path.with_name(path.name + ".lettabot")
            tmp.write_text(json.dumps(data, indent=2))
            tmp.replace(path)
            changed.append(path)
    for path in changed:
        log.warning("removed permission rules and hooks from %s: approvals are lettabot's",
                    path)
    return changed
