"""One CLI start at a time per Letta home, across processes.

Why (CLI 0.34.12, ``letta.js``): a CLI process starting a session is not safe beside
another one starting on the same home.

- A new local conversation is numbered by ``LocalStore.nextConversationId()``: a
  process-local counter (``conversationSeq``) checked with ``existsSync(<conversation
  dir>)``; ``persistConversationState()`` then makes the directory with ``mkdirSync(...,
  {recursive: true})`` and overwrites ``conversation.json``: no exclusive create, so two
  processes that both pass the check use one ``local-conv-<n>`` and two sessions write
  one conversation (measured: 1-4 of 40-50 concurrent starts on this 2-core machine).
- ``SettingsManager.initialize()`` reads ``~/.letta/settings.json`` and, when it does not
  parse, falls back to the defaults and marks them all dirty; ``persistSettings()`` writes
  with ``writeFileSync`` (truncate, then write, not a rename). A process that reads while
  another writes sees an empty or half file, and writes back its defaults: the user's
  agents, device id and own keys are gone.

Both happen between the process's start and its ``init`` message (measured: every
settings write and the conversation directory come before ``init``, none during a turn
or at exit; tests/sdk/test_subprocess_concurrency.py runs turns beside starts). So
:func:`cli_start_lock` is held until the process has sent ``init``: an exclusive
``flock`` on a lock file in each folder the CLI writes (``$HOME/.letta`` for the
settings, the local backend folder for conversations), which serialises every lettabot
process on the machine, and an in-process FIFO lock in front of it so the sessions of
one process queue fairly instead of polling. The kernel drops a ``flock`` when its
holder dies; the lock file's descriptor is not inherited by the CLI (Python opens files
close-on-exec).

Most of a start is the CLI loading its bundle (measured: its first touch of the home
comes ~1.2-1.6 s after spawn, ``init`` ~0.2-0.4 s later). So the process is spawned
before the lock with a :class:`StartGate` preloaded (``cli_start_gate.cjs``): it boots in
parallel with the others and waits at its first touch of the home until the lock is
held; only the part from there to ``init`` is serial.

An App Server (``letta server --listen``) start is no different: it reads the settings
before it listens and rewrites them (truncate, then write) as it begins to listen
(measured); ``LocalServer.start`` holds the lock, behind the same gate, from its first touch
of the home until it listens. Its later writes (on ``create_agent``, some turns) merge into
the file as it is then and are not serialised.

A process that does not take the lock (someone's own ``letta`` on the same home) is
not serialised; :class:`SettingsGuard` then puts back the settings keys a start lost.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import anyio

__all__ = ["LOCK_NAME", "SettingsGuard", "StartGate", "cli_start_lock", "letta_dirs"]

log = logging.getLogger("lettabot.sdk")

LOCK_NAME = ".lettabot-cli-start.lock"
_POLL = 0.005
_POLL_MAX = 0.05

# Keys the CLI removes from settings.json itself (CLI 0.34.12): OBSOLETE_SETTINGS_KEYS,
# and refreshToken once migrateTokensToSecrets() has moved it to the system keychain.
_CLI_DROPS = frozenset({"reflectionBehavior", "enableSleeptime", "pinnedAgents",
                        "pinnedAgentsByServer", "pinnedConversationsByServer",
                        "refreshToken"})

_local_locks: dict[tuple[str, int], anyio.Lock] = {}


def letta_dirs(env: Mapping[str, str]) -> list[Path]:
    """The folders a CLI with environment ``env`` writes at start, in lock order."""
    home = env.get("HOME") or os.path.expanduser("~")
    settings_dir = Path(home) / ".letta"
    dirs = {settings_dir.resolve()}
    backend = env.get("LETTA_LOCAL_BACKEND_DIR")
    dirs.add(Path(backend).resolve() if backend else (settings_dir / "lc-local-backend").resolve())
    return sorted(dirs)


@contextlib.asynccontextmanager
async def cli_start_lock(env: Mapping[str, str]) -> AsyncIterator[None]:
    """Hold the start lock of every folder in :func:`letta_dirs` (sorted: no deadlock)."""
    async with contextlib.AsyncExitStack() as stack:
        for folder in letta_dirs(env):
            await stack.enter_async_context(_folder_lock(folder))
        yield


@contextlib.asynccontextmanager
async def _folder_lock(folder: Path) -> AsyncIterator[None]:
    # Per thread: an anyio lock belongs to one event loop (the flock still excludes the
    # other threads: each start opens the lock file anew).
    key = (str(folder), threading.get_ident())
    local = _local_locks.get(key)
    if local is None:
        local = _local_locks[key] = anyio.Lock()
    async with local:
        fd = _open_lock_file(folder)
        if fd is None:  # a folder we cannot write: the CLI cannot either; nothing to guard
            yield
            return
        try:
            await _flock(fd)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _open_lock_file(folder: Path) -> int | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        log.warning("no CLI start lock in %s: %s", folder, exc)
        return None


async def _flock(fd: int) -> None:
    """Take an exclusive flock without blocking the event loop (and cancellably)."""
    delay = _POLL
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        await anyio.sleep(delay)
        delay = min(delay * 1.5, _POLL_MAX)


_GATE_SCRIPT = Path(__file__).with_name("cli_start_gate.cjs")


class StartGate:
    """A pipe whose read end the CLI inherits; the preloaded gate waits on it.

    ``prepare(env)`` adds the preload to ``env`` (``NODE_OPTIONS``); pass
    :attr:`pass_fds` to the process, then :meth:`started` (the parent's copy of the read
    end is closed), and :meth:`open` once the start lock is held. :meth:`close` without
    :meth:`open` makes a waiting CLI exit. Without the script (or a pipe) there is no
    gate: the lock is then simply held from before the spawn, which is as safe and
    slower.
    """

    def __init__(self) -> None:
        self._read: int | None = None
        self._write: int | None = None

    def prepare(self, env: dict[str, str], cli: str) -> None:
        if not _GATE_SCRIPT.is_file() or not _runs_on_node(cli):
            return
        try:
            self._read, self._write = os.pipe()
        except OSError:
            return
        require = f'--require "{_GATE_SCRIPT}"'
        env["NODE_OPTIONS"] = f"{env.get('NODE_OPTIONS', '')} {require}".strip()
        env["LETTABOT_START_GATE_FD"] = str(self._read)
        env["LETTABOT_START_GATE_REQUIRE"] = require

    @property
    def active(self) -> bool:
        return self._write is not None

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self._read,) if self._read is not None else ()

    def started(self) -> None:
        if self._read is not None:
            os.close(self._read)
            self._read = None

    def open(self) -> None:
        if self._write is not None:
            with contextlib.suppress(OSError):  # the CLI is gone: its end of output says so
                os.write(self._write, b"1")
        self.close()

    def close(self) -> None:
        self.started()
        if self._write is not None:
            os.close(self._write)
            self._write = None


def _runs_on_node(cli: str) -> bool:
    """Whether ``cli`` is Node running the CLI's bundle (NODE_OPTIONS reaches it): the
    ``letta`` of PyPI's ``letta`` (a Python launcher that execs its bundled node) or an
    npm ``letta`` script run by node. Anything else (a compiled binary, Bun) gets no gate."""
    try:
        with open(cli, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    first = head.split(b"\n", 1)[0]
    if not first.startswith(b"#!"):
        return False
    return b"node" in first or (b"python" in first and b"letta_code" in head)


class SettingsGuard:
    """The settings file before a CLI start, to put back what the start lost.

    Under :func:`cli_start_lock` lettabot's own starts cannot damage it; this covers a
    CLI started by someone else at the same moment. Keys the CLI changed are kept as it
    left them; only keys it lost (or the whole file, if it no longer parses) come back.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        home = env.get("HOME") or os.path.expanduser("~")
        self.path = Path(home) / ".letta" / "settings.json"
        self.before = _read_object(self.path)

    def repair(self) -> bool:
        """Put back lost keys; True when the file was repaired."""
        if not self.before:
            return False
        after = _read_object(self.path)
        if after is None:
            after = {}
        lost = {k: v for k, v in self.before.items() if k not in after and k not in _CLI_DROPS}
        if not lost:
            return False
        log.warning("the Letta CLI lost settings %s from %s (a concurrent start?): "
                    "putting them back", sorted(lost), self.path)
        _write_atomically(self.path, {**after, **lost})
        return True


def _read_object(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not repair %s: %s", path, exc)
