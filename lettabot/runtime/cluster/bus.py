"""LISTEN/NOTIFY between replicas: broadcasts, and requests the one replica that can
answer (the one running the turn) answers.

A request carries a correlation id; each replica's handler for its kind returns a reply
or None (not mine); the first reply wins. No reply within the timeout: nobody holds it.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]

__all__ = ["Bus", "Handler"]

log = logging.getLogger("lettabot.runtime.cluster.bus")

CHANNEL = "lettabot_bus"
MAX_PAYLOAD = 7900  # PostgreSQL's NOTIFY payload limit is 8000 bytes

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Bus:
    """One replica's end of the bus. :meth:`run` listens until cancelled."""

    def __init__(self, dsn: str, replica: str) -> None:
        self.dsn = dsn
        self.replica = replica
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
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("cluster bus: cannot connect (%s); retrying", exc)
                    await anyio.sleep(2)
                    continue
                lost = anyio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                try:
                    await conn.add_listener(CHANNEL, self._heard)
                    self.ready.set()
                    await lost.wait()
                    log.warning("cluster bus: connection lost; reconnecting")
                finally:
                    with anyio.CancelScope(shield=True):
                        await conn.close()

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
        try:
            message = json.loads(payload)
        except ValueError:
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
        payload = json.dumps({"kind": kind, "corr": corr, "from": self.replica, "data": data})
        if len(payload.encode()) > MAX_PAYLOAD:
            raise ValueError(f"cluster bus: a {kind} message is too large")
        async with self._lock:
            for attempt in (1, 2):
                try:
                    if self._publisher is None or self._publisher.is_closed():
                        self._publisher = await asyncpg.connect(self.dsn)
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
