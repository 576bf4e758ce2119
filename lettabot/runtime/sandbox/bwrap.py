"""bubblewrap argument lists: the CLI's sandbox and each shell command's sandbox.

Two layers, both built from an empty root rather than by hiding things from a full one:

- **The CLI's sandbox** (the App Server and everything in-process: Read, Write, Grep…):
  the system's programs and libraries read-only, a short list of ``/etc`` files, the Letta
  CLI's own files, the Letta home (read-write: the CLI keeps its agents there), the
  workspaces, a private ``/tmp`` and ``/proc`` (own PID namespace: lettabot's processes and
  their ``environ`` are not there). lettabot's config, ``.env``, store and home are not
  mounted at all.
- **The shell's sandbox** (every Bash command, via ``$SHELL``): the same system, but only
  the conversation's own scope folder (or the agent's memory folder, for memory commits)
  writable, no Letta home, every namespace new (no network unless configured), limits on
  time, memory, processes and file size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["ETC_FILES", "mask_args", "system_args"]

ETC_FILES = (
    "alternatives", "ca-certificates", "ca-certificates.conf", "ssl", "pki", "crypto-policies",
    "hosts", "resolv.conf", "nsswitch.conf", "host.conf", "gai.conf", "services", "protocols",
    "passwd", "group", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone",
    "gitconfig", "mime.types", "magic", "magic.mime", "os-release", "debian_version",
    "bash.bashrc", "profile", "inputrc", "locale.alias", "terminfo",
)
"""What programs need of ``/etc``; nothing with credentials (no ``shadow``, ``npmrc``,
``pip.conf``, ``environment``, nor a config folder lettabot may have been given)."""

_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


def system_args(*, nested: bool = False) -> list[str]:
    """The read-only system: ``/usr`` and friends (symlinks kept as symlinks), ``/etc``'s
    short list, fresh ``/dev`` and ``/tmp``, and ``/proc``.

    ``/proc`` is a fresh one (needs a new PID namespace), except ``nested``: a sandbox in a
    sandbox may not mount procfs (the outer one's is partly covered, which the kernel takes
    as too revealing), so it gets the outer one read-only. From a new user namespace the
    outer processes' ``environ``, ``root`` and ``fd`` are refused (ptrace access checks)."""
    args: list[str] = []
    for name in _SYSTEM_DIRS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        path = Path("/etc") / name
        if path.exists() or path.is_symlink():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--dev", "/dev", "--tmpfs", "/tmp"]
    args += ["--ro-bind", "/proc", "/proc"] if nested else ["--proc", "/proc"]
    return args


def mask_args(secret: Iterable[Path], mounted: Sequence[Path]) -> list[str]:
    """Cover each secret path that lies inside a mounted folder: an empty read-only folder
    over a folder, ``/dev/null`` over a file."""
    args: list[str] = []
    for path in sorted({Path(os.path.realpath(p)) for p in secret}):
        if not any(path != m and m in path.parents for m in mounted):
            continue
        if path.is_dir():
            args += ["--tmpfs", str(path), "--remount-ro", str(path)]
        elif path.exists():
            args += ["--ro-bind", "/dev/null", str(path)]
    return args
