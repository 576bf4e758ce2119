"""LISTEN/NOTIFY between replicas: broadcasts, and requests the one replica that can
answer (the one running the turn) answers.

A request carries a correlation id; each replica's handler for its kind returns a reply
or None (not mine); the first reply wins. No reply within the timeout: nobody holds it.

Any role that may connect to the database may ``NOTIFY lettabot_bus``, so every message is
signed: ``<hex HMAC-SHA256>.<json>``, keyed with a secret the replicas share in the store
(``lettabot_cluster_keys``, created once with ``INSERT … ON CONFLICT DO NOTHING``, so that
replicas starting together agree; a role that may NOTIFY but not read that table cannot
sign). The JSON carries a timestamp and a nonce: a message older than :data:`WINDOW`
seconds, or heard twice, is dropped. What arrives unsigned, badly signed, stale or
replayed is logged and ignored. Handlers still treat a message as a hint, never as the
authority (an approval is decided in the store, see :class:`~lettabot.runtime.bot.Bot`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]

__all__ = ["Bus", "Handler"]

log = logging.getLogger("lettabot.runtime.cluster.bus")

CHANNEL = "lettabot_bus"
MAX_PAYLOAD = 7900  # PostgreSQL's NOTIFY payload limit is 8000 bytes
WINDOW = 60.0
"""Seconds a signed message stays valid (replicas' clocks must agree within this)."""
KEY_NAME = "bus"
_LOAD_KEY = ("INSERT INTO lettabot_cluster_keys (name, value, created_at) "
             "VALUES ($1, $2, now()) ON CONFLICT (name) DO NOTHING")
_READ_KEY = "SELECT value FROM lettabot_cluster_keys WHERE name = $1"

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Bus:
    """One replica's end of the bus. :meth:`run` listens until cancelled."""

    def __init__(self, dsn: str, replica: str, *, key: bytes | None = None) -> None:
        self.dsn = dsn
        self.replica = replica
        self._key = key
        self._seen: dict[str, float] = {}  # nonce -> when it stops being valid
        self.rejected = 0
        """Messages dropped: unsigned, badly signed, stale or replayed."""
        self._handlers: dict[str, Handler] = {}
        self._replies: dict[str, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        self._send, self._receive = anyio.create_memory_object_stream[str](1000)
        self._publisher: asyncpg.Connection | None = None
        self._lock = anyio.Lock()
        self.ready = anyio.Event()

    def on(self, kind: str, handler: Handler) -> None:
        """Answer requests of ``kind`` (return None when it is not this replica's)."""
        self._handlers[kind] = handler

    async def run(self) -> None:
        """Listen (reconnecting after a failure) and dispatch, until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._dispatch)
            while True:
                try:
                    conn = await asyncpg.connect(self.dsn)
                except Exception as exc:  # refused, reset, timed out: the database is away
                    log.warning("cluster bus: cannot connect (%s); retrying", exc)
                    await anyio.sleep(2)
                    continue
                lost = anyio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                try:
                    await self._load_key(conn)
                    await conn.add_listener(CHANNEL, self._heard)
                    self.ready.set()
                    await lost.wait()
                    log.warning("cluster bus: connection lost; reconnecting")
                except Exception as exc:  # lost while setting up: never end the replica
                    log.warning("cluster bus: the connection failed (%s); reconnecting", exc)
                    await anyio.sleep(2)
                finally:
                    with anyio.CancelScope(shield=True):
                        await conn.close()

    async def _load_key(self, conn: Any) -> bytes:
        """The replicas' shared key: the stored one, or a new one stored first."""
        if self._key is None:
            await conn.execute(_LOAD_KEY, KEY_NAME, secrets.token_hex(32))
            self._key = bytes.fromhex(await conn.fetchval(_READ_KEY, KEY_NAME))
        return self._key

    def _sign(self, body: str) -> str:
        assert self._key is not None
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def _verified(self, payload: str) -> dict[str, Any] | None:
        """The message, if a replica signed it within the window and it is new; else None."""
        sig, dot, body = payload.partition(".")
        if not dot or self._key is None or not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            message = json.loads(body)
            ts, nonce = float(message["ts"]), str(message["nonce"])
        except (ValueError, KeyError, TypeError):
            return None
        now = time.time()
        if abs(now - ts) > WINDOW or nonce in self._seen:
            return None
        self._seen = {n: t for n, t in self._seen.items() if t > now}
        self._seen[nonce] = ts + WINDOW
        return message if isinstance(message, dict) else None

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._send.send_nowait(payload)
        except anyio.WouldBlock:
            log.warning("cluster bus: backlog full; a message was dropped")

    async def _dispatch(self) -> None:
        async with anyio.create_task_group() as tg:
            async for payload in self._receive:
                tg.start_soon(self._handle, payload)

    async def _handle(self, payload: str) -> None:
        message = self._verified(payload)
        if message is None:
            self.rejected += 1
            log.warning("cluster bus: dropped a message that no replica signed (or a stale "
                        "or replayed one): %.80r", payload)
            return
        kind, corr = message.get("kind"), message.get("corr")
        if kind == "reply":
            waiting = self._replies.get(str(corr))
            if waiting is not None and not waiting[0].is_set():
                waiting[1].append(message.get("data") or {})
                waiting[0].set()
            return
        handler = self._handlers.get(str(kind))
        if handler is None:
            return
        try:
            reply = await handler(message.get("data") or {})
        except Exception:
            log.exception("cluster bus: handling %s failed", kind)
            return
        if reply is not None and corr:
            await self.publish("reply", reply, corr=str(corr))

    async def publish(self, kind: str, data: dict[str, Any], *, corr: str | None = None) -> None:
        body = json.dumps({"kind": kind, "corr": corr, "from": self.replica, "data": data,
                           "ts": time.time(), "nonce": secrets.token_hex(12)})
        async with self._lock:
            for attempt in (1, 2):
                try:
                    if self._publisher is None or self._publisher.is_closed():
                        self._publisher = await asyncpg.connect(self.dsn)
                    await self._load_key(self._publisher)
                    payload = f"{self._sign(body)}.{body}"
                    if len(payload.encode()) > MAX_PAYLOAD:
                        raise ValueError(f"cluster bus: a {kind} message is too large")
                    await self._publisher.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
                    return
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    self._publisher = None
                    if attempt == 2:
                        raise

    async def request(self, kind: str, data: dict[str, Any],
                      within: float = 5.0) -> dict[str, Any] | None:
        """Ask every replica; the first reply, or None if none answered ``within`` s."""
        corr = secrets.token_hex(8)
        done = anyio.Event()
        box: list[dict[str, Any]] = []
        self._replies[corr] = (done, box)
        try:
            await self.publish(kind, data, corr=corr)
            with anyio.move_on_after(within):
                await done.wait()
            return box[0] if box else None
        finally:
            self._replies.pop(corr, None)

    async def close(self) -> None:
        if self._publisher is not None:
            with anyio.CancelScope(shield=True):
                await self._publisher.close()
            self._publisher = None
