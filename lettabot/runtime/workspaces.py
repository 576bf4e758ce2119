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
import os
import re
from pathlib import Path

__all__ = ["prepare_scope_dir", "scope_dir"]

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
