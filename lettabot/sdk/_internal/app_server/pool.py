"""Which App Server a session uses, started lazily and shared.

- ``LETTA_APP_SERVER_URL`` (+ ``LETTA_APP_SERVER_TOKEN``): a server someone else runs.
- otherwise: a local ``letta server`` per CLI + environment, started on first use (and
  restarted if it died). When its last session closes it stays up, idle, for
  ``app_server_idle`` seconds (else ``$LETTABOT_SDK_APP_SERVER_IDLE``, else 60), so the next
  session (a sequential ``prompt()``, on any event loop) starts warm; then a timer thread stops
  it. :func:`stop_idle` (``default_client().close()``) stops idle ones at once, and the
  interpreter's exit kills whatever still runs (see :mod:`.process`). It requires a capability
  token even on loopback, so no other local process can drive its conversations.

A :class:`Lease` is one session's hold on a server; its ``connection`` is the current
WebSocket of that server for the running event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from lettabot.sdk._internal.app_server.connection import Connection
from lettabot.sdk._internal.app_server.process import LocalServer
from lettabot.sdk._internal.cli import cli_env, find_cli
from lettabot.sdk.errors import CLIConnectionError
from lettabot.sdk.options import SessionOptions

__all__ = ["Lease", "ServerSet", "Slot", "acquire", "idle_seconds", "idle_servers", "server_key",
           "shared_slots", "stop_idle"]

log = logging.getLogger("lettabot.sdk.app_server")

URL_ENV = "LETTA_APP_SERVER_URL"
TOKEN_ENV = "LETTA_APP_SERVER_TOKEN"
IDLE_ENV = "LETTABOT_SDK_APP_SERVER_IDLE"
DEFAULT_IDLE = 60.0
CONNECT_WINDOW = 30.0
"""Seconds a server is tried before :class:`AppServerUnreachableError` (one that just
printed its URL may need a while before it takes upgrades)."""
HOST_CONNECT_WINDOW = 2.0
"""The same for a client's named host: a host that is down fails its sessions fast."""


def idle_seconds(options: SessionOptions) -> float:
    """How long a process-wide local server outlives its last session (0: not at all)."""
    if options.app_server_idle is not None:
        return options.app_server_idle
    raw = os.environ.get(IDLE_ENV, "").strip()
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            log.warning("%s=%r is not a number of seconds; using %s", IDLE_ENV, raw, DEFAULT_IDLE)
    return DEFAULT_IDLE


@dataclass(eq=False)
class _Parked:
    server: LocalServer
    timer: threading.Timer
    state: tuple[tuple[str, int, int], ...]
    """:func:`store_state` when it went idle: a server caches the local backend (it does not
    see agents another process made, and would write back its stale conversations)."""


def _store_paths(env: dict[str, str]) -> list[Path]:
    home = Path(env.get("HOME") or Path.home())
    backend = env.get("LETTA_LOCAL_BACKEND_DIR") or str(home / ".letta" / "lc-local-backend")
    return [Path(backend), home / ".letta" / "settings.json"]


def store_state(env: dict[str, str]) -> tuple[tuple[str, int, int], ...]:
    """Every file of the CLI's local backend (and its settings) with mtime and size."""
    out: list[tuple[str, int, int]] = []
    for root in _store_paths(env):
        if root.is_file():
            st = root.stat()
            out.append((str(root), st.st_mtime_ns, st.st_size))
            continue
        for folder, _dirs, files in os.walk(root):
            for name in files:
                if (name == "index" and os.path.basename(folder) == ".git") or (
                        ".lock" in name or name.endswith(".tmp")):
                    continue  # git rewrites its index's stat cache on a mere read; locks come
                    # and go (what they guard is written to the files themselves)
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                out.append((path, st.st_mtime_ns, st.st_size))
    out.sort()
    return tuple(out)


# Idle local servers by server key. Not per event loop: the process outlives the loop that
# started it, so ``asyncio.run(prompt(...))`` twice reuses it. Guarded by a thread lock (the
# idle timers run in threads).
_idle: dict[str, _Parked] = {}
_idle_lock = threading.Lock()


def _park(key: str, server: LocalServer, seconds: float,
          state: tuple[tuple[str, int, int], ...]) -> bool:
    """Keep ``server`` for the next session with ``key`` for ``seconds``; False: stop it."""
    if seconds <= 0 or not server.alive():
        return False
    timer = threading.Timer(seconds, _expire, (key, server))
    timer.daemon = True
    with _idle_lock:
        old = _idle.pop(key, None)
        _idle[key] = _Parked(server, timer, state)
    if old is not None:  # another event loop's server for the same environment
        old.timer.cancel()
        old.server.stop_sync()
    timer.start()
    log.debug("App Server pid %s idle; stopping it in %ss unless used", server.pid, seconds)
    return True


def _expire(key: str, server: LocalServer) -> None:
    with _idle_lock:
        parked = _idle.get(key)
        if parked is None or parked.server is not server:
            return  # taken again (or replaced) meanwhile
        del _idle[key]
    log.debug("App Server pid %s was idle; stopping it", server.pid)
    server.stop_sync()


def _unpark(key: str, env: dict[str, str]) -> LocalServer | None:
    """The idle server for ``key``, if one still runs and nothing else wrote the local
    backend since it went idle (it is no longer idle then; a stale one is stopped)."""
    with _idle_lock:
        parked = _idle.pop(key, None)
    if parked is None:
        return None
    parked.timer.cancel()
    if parked.server.alive():
        if store_state(env) == parked.state:
            log.debug("reusing idle App Server pid %s", parked.server.pid)
            return parked.server
        log.debug("the local backend changed while App Server pid %s was idle; replacing it",
                  parked.server.pid)
    parked.server.stop_sync()  # reap it, drop its token
    return None


def idle_servers() -> list[LocalServer]:
    """The local servers kept running with no session on them, for inspection."""
    with _idle_lock:
        return [parked.server for parked in _idle.values()]


def stop_idle() -> None:
    """Stop every idle server now (blocking: SIGTERM, then SIGKILL after its grace)."""
    with _idle_lock:
        parked = list(_idle.values())
        _idle.clear()
    for entry in parked:
        entry.timer.cancel()
        entry.server.stop_sync()


@dataclass(eq=False)
class Slot:
    """One server, as seen from one event loop."""

    key: str
    url: str | None  # fixed for external servers
    token: str | None
    cli: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = field(default_factory=Path.cwd)
    server: LocalServer | None = None
    connection: Connection | None = None
    users: int = 0
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    generation: int = 0
    idle: float = 0.0
    """Seconds the local server stays up after the last session (process-wide slots)."""
    window: float = CONNECT_WINDOW
    """Seconds a connection is tried before the server counts as unreachable."""

    async def ensure(self, timeout: float) -> Connection:  # noqa: ASYNC109
        """The live connection, (re)starting the local server if needed."""
        async with self.lock:
            conn = self.connection
            if conn is not None and not conn.dead:
                return conn
            if conn is not None:
                await conn.close()
                self.connection = None
            url = self.url
            if url is None:
                if self.server is not None and not self.server.alive():
                    log.warning("the App Server (pid %s) died; starting a new one", self.server.pid)
                    await self.server.stop()
                    self.server = None
                if self.server is None:  # one left idle, if any (no longer idle then)
                    self.server = await anyio.to_thread.run_sync(_unpark, self.key, self.env)
                if self.server is None:
                    assert self.cli is not None
                    self.server = LocalServer(self.cli, self.env, self.cwd)
                    await self.server.start(timeout)
                url = self.server.url
                self.token = self.server.token
                assert url is not None
            conn = await self._open(url, timeout)
            self.connection = conn
            self.generation += 1
            return conn

    async def _open(self, url: str, timeout: float) -> Connection:  # noqa: ASYNC109
        """Connect; a server that just printed its URL may need a while (seconds, on a busy
        machine) before it takes upgrades. Ours is replaced only if its process died."""
        start = anyio.current_time()
        deadline = start + min(timeout, self.window)
        attempt, replaced = 0, False
        while True:
            conn = Connection(url, self.token)
            try:
                await conn.open(timeout)
                return conn
            except CLIConnectionError as exc:
                if exc.status == 401 or anyio.current_time() >= deadline:
                    raise
                wedged = not replaced and anyio.current_time() - start > 10.0
                if self.url is None and self.server is not None and (
                        not self.server.alive() or wedged):
                    log.warning("the App Server at %s takes no connections; starting a new one",
                                url)
                    replaced = replaced or wedged
                    await self.server.stop()
                    self.server = LocalServer(self.server.cli, self.env, self.cwd)
                    url = await self.server.start(timeout)
                    self.token = self.server.token
                log.debug("App Server not ready yet (%s); retrying", exc)
                attempt += 1
                await anyio.sleep(min(1.0, 0.1 * attempt))

    async def release(self) -> None:
        async with self.lock:
            self.users -= 1
            if self.users > 0:
                return
            if _slots.get((self.key, _loop_id())) is self:
                _slots.pop((self.key, _loop_id()), None)
            if self.connection is not None:
                await self.connection.close()
                self.connection = None
            if self.server is not None:
                parked = False
                if self.idle > 0 and self.server.alive():
                    with anyio.CancelScope(shield=True):
                        state = await anyio.to_thread.run_sync(store_state, self.env)
                    parked = _park(self.key, self.server, self.idle, state)
                if not parked:
                    with anyio.CancelScope(shield=True):
                        await self.server.stop()
                self.server = None


_slots: dict[tuple[str, int], Slot] = {}


def shared_slots() -> list[Slot]:
    """The process-wide App Servers (one per environment and event loop), for inspection."""
    return list(_slots.values())


def _loop_id() -> int:
    import asyncio

    return id(asyncio.get_running_loop())


def _remote(options: SessionOptions) -> tuple[str | None, str | None]:
    """The external server for ``options`` (the option, else the environment), or None."""
    if options.app_server_url:
        token = options.app_server_token
        return options.app_server_url, token.get_secret_value() if token else None
    url = os.environ.get(URL_ENV)
    return (url, os.environ.get(TOKEN_ENV)) if url else (None, None)


def server_key(options: SessionOptions) -> str:
    """Sessions with the same key share a server."""
    url, _ = _remote(options)
    if url:
        return f"url:{url}"
    env = cli_env(options.env)
    digest = hashlib.sha256(repr(sorted(env.items())).encode()).hexdigest()[:16]
    return f"local:{find_cli(options.cli_path)}:{digest}"


@dataclass(eq=False)
class Lease:
    """A session's hold on a server; ``release()`` once."""

    slot: Slot
    released: bool = False

    @property
    def external(self) -> bool:
        return self.slot.url is not None

    @property
    def generation(self) -> int:
        return self.slot.generation

    async def connection(self, timeout: float) -> Connection:  # noqa: ASYNC109
        return await self.slot.ensure(timeout)

    def server(self) -> LocalServer | None:
        return self.slot.server

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await self.slot.release()


def acquire(options: SessionOptions) -> Lease:
    """Take a hold on the server for ``options`` (nothing starts until first use)."""
    key = server_key(options)
    slot = _slots.get((key, _loop_id()))
    if slot is None:
        url, token = _remote(options)
        slot = Slot(key=key, url=url, token=token)
        if url is None:
            slot.cli = find_cli(options.cli_path)
            slot.env = cli_env(options.env)
            slot.cwd = Path.cwd()
        _slots[(key, _loop_id())] = slot
    if slot.url is None:
        slot.idle = idle_seconds(options)
    slot.users += 1
    return Lease(slot)


class ServerSet:
    """A client's own App Servers: remote ones it was given, then local ones it starts.

    Slots are made per event loop on first use; the set holds each one (so a local server
    outlives its sessions) until :meth:`close`, which stops what it started once the last
    session on it closed.
    """

    def __init__(self, name: str, *, local: int, remote: list[tuple[str, str | None]],
                 cli: str | None, env: dict[str, str], cwd: Path,
                 pool: int | None = None) -> None:
        self.name = name
        # remote[:pool] (all by default), the local ones, then remote[pool:] (named hosts)
        pool = len(remote) if pool is None else pool
        self.specs: list[tuple[str | None, str | None]] = [
            *remote[:pool], *[(None, None)] * local, *remote[pool:]]
        self.hosts_from = pool + local
        """Servers from this index on are named hosts (tried for HOST_CONNECT_WINDOW)."""
        self.cli = cli
        self.env = env
        self.cwd = cwd
        self._slots: dict[tuple[int, int], Slot] = {}

    def __len__(self) -> int:
        return len(self.specs)

    def _slot(self, index: int) -> Slot:
        key = (index, _loop_id())
        slot = self._slots.get(key)
        if slot is None:
            url, token = self.specs[index]
            slot = Slot(key=f"{self.name}:{index}", url=url, token=token, users=1,
                        window=HOST_CONNECT_WINDOW if index >= self.hosts_from
                        else CONNECT_WINDOW)
            if url is None:
                slot.cli = find_cli(self.cli)
                slot.env = dict(self.env)
                slot.cwd = self.cwd
            self._slots[key] = slot
        return slot

    def lease(self, index: int) -> Lease:
        slot = self._slot(index)
        slot.users += 1
        return Lease(slot)

    def states(self) -> list[dict[str, object]]:
        """Each server: url, pid and liveness (local), connected, restarts."""
        loop = _loop_id()
        out: list[dict[str, object]] = []
        for index, (url, _) in enumerate(self.specs):
            slot = self._slots.get((index, loop))
            server = slot.server if slot is not None else None
            conn = slot.connection if slot is not None else None
            out.append({
                "index": index,
                "remote": url is not None,
                "url": url or (server.url if server is not None else None),
                "pid": server.pid if server is not None else None,
                "alive": bool(server.alive()) if server is not None else url is not None,
                "connected": conn is not None and not conn.dead,
                "restarts": max(0, slot.generation - 1) if slot is not None else 0,
            })
        return out

    async def close(self) -> None:
        """Drop the set's hold on this loop's servers (each stops when its last session has)."""
        loop = _loop_id()
        for key in [k for k in self._slots if k[1] == loop]:
            await self._slots.pop(key).release()
