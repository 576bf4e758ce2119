"""A local ``letta server --listen`` process: start it, read its URL, stop it.

The process is a plain :class:`subprocess.Popen` (not tied to one event loop) so one
server can outlive the loop that started it. It runs in its own session (signals meant
for our process group do not reach it; we stop it). It dies with us: Linux's parent-death
signal is armed in the child, and an ``atexit`` hook kills anything still running.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path

import anyio

from lettabot.sdk._internal.start_lock import SettingsGuard, StartGate, cli_start_lock
from lettabot.sdk.errors import ProcessError

__all__ = ["LocalServer"]

log = logging.getLogger("lettabot.sdk.app_server")

_LISTENING = re.compile(r"Listening on (wss?://\S+)")
_live: weakref.WeakSet[LocalServer] = weakref.WeakSet()


def _arm_parent_death_signal() -> None:  # runs in the child, before exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class LocalServer:
    """One App Server process on a loopback port."""

    def __init__(self, cli: str, env: Mapping[str, str], cwd: Path, *, grace: float = 3.0) -> None:
        self.cli = cli
        self.env = dict(env)
        self.cwd = cwd
        self.grace = grace
        self.url: str | None = None
        self.token: str | None = None
        """The capability token clients must send (the server refuses any other)."""
        self._token_dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=200)
        self._found = threading.Event()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output_tail(self) -> str:
        return "\n".join(self._tail)

    async def start(self, timeout: float) -> str:  # noqa: ASYNC109
        """Spawn the server and return its ``ws://`` URL once it listens."""
        # Loopback needs no auth by default: any local process (or user) could then open a
        # conversation ``unrestricted``. A fresh capability token, readable only by us, closes it.
        self._remove_token()
        self._token_dir = tempfile.mkdtemp(prefix="lettabot-ws-")  # mode 0700
        token_file = Path(self._token_dir) / "token"
        self.token = secrets.token_urlsafe(32)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.token)
        argv = [self.cli, "server", "--listen", "ws://127.0.0.1:0",
                "--ws-auth", "capability-token", "--ws-token-file", str(token_file)]
        # The server reads settings.json as it starts and rewrites it (truncate, then
        # write) as it begins to listen: beside another CLI start on this home that can
        # wipe the settings (see start_lock). So, like a subprocess start, it boots at once
        # and from its first touch of the home until it listens holds the home's lock.
        env = dict(self.env)
        gate = StartGate()
        gate.prepare(env, self.cli)
        deadline = time.monotonic() + timeout
        try:
            if gate.active:
                self._spawn(argv, env, gate)
            async with cli_start_lock(env):
                guard = SettingsGuard(env)
                if not gate.active:
                    self._spawn(argv, env, gate)
                gate.open()
                try:
                    await self._wait_listening(deadline, timeout)
                finally:
                    guard.repair()
        finally:
            gate.close()
        log.debug("App Server pid %s listening on %s", self.pid, self.url)
        assert self.url is not None
        return self.url

    def _spawn(self, argv: list[str], env: dict[str, str], gate: StartGate) -> None:
        # Popen runs in the loop's thread: the parent-death signal follows the forking
        # thread, and a worker thread may exit long before we do.
        self._proc = subprocess.Popen(
            argv,
            env=env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_arm_parent_death_signal if os.name == "posix" else None,
            # Its own session: a terminal's Ctrl-C (SIGINT to the whole foreground group)
            # must reach only us, so turns in flight can drain before we stop the server.
            start_new_session=True,
            pass_fds=gate.pass_fds,
        )
        gate.started()
        _live.add(self)
        self._found = threading.Event()
        threading.Thread(target=self._drain, args=(self._found,), daemon=True).start()

    async def _wait_listening(self, deadline: float, timeout: float) -> None:  # noqa: ASYNC109
        assert self._proc is not None
        while not self._found.is_set():
            if self._proc.poll() is not None:
                raise ProcessError(
                    "letta server exited before listening",
                    exit_code=self._proc.returncode,
                    stderr=self.output_tail(),
                )
            if time.monotonic() > deadline:
                await self.stop()
                raise ProcessError(
                    f"letta server did not listen within {timeout}s", stderr=self.output_tail()
                )
            await anyio.sleep(0.02)
        if self.url is None:  # its output ended without the line: it died (was killed)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await anyio.to_thread.run_sync(lambda: self._proc and self._proc.wait(5))
            raise ProcessError("letta server exited before listening",
                               exit_code=self._proc.returncode, stderr=self.output_tail())

    def _drain(self, found: threading.Event) -> None:
        """Read the server's output (so its pipe never fills); note the URL."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self._tail.append(line)
            if not found.is_set() and (match := _LISTENING.search(line)):
                self.url = match.group(1)
                found.set()
        found.set()

    def _remove_token(self) -> None:
        if self._token_dir is not None:
            shutil.rmtree(self._token_dir, ignore_errors=True)
            self._token_dir = None

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; always reaps."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._remove_token()
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        deadline = time.monotonic() + self.grace
        while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await anyio.sleep(0.02)
        if proc.poll() is None:
            log.warning("App Server pid %s ignored SIGTERM; killing it", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await anyio.to_thread.run_sync(proc.wait)
        self._remove_token()

    def stop_sync(self) -> None:
        """:meth:`stop` for a thread without an event loop (an idle timer, a close)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                log.warning("App Server pid %s ignored SIGTERM; killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    proc.wait(timeout=5)
        self._remove_token()

    def kill_now(self) -> None:
        """Synchronous last resort (interpreter exit)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        self._remove_token()


@atexit.register
def _kill_all() -> None:
    for server in list(_live):
        server.kill_now()
