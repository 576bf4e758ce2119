"""The operations endpoint: ``/healthz``, ``/readyz`` and ``/metrics`` on one port.

- ``GET /healthz`` — liveness: 200 while the process serves (its body is ``Bot.health()``:
  ``ok``, ``degraded`` or ``draining``). A container orchestrator restarts on failure, so a
  drain or a model outage must not fail it.
- ``GET /readyz`` — readiness: 200 only when the store answers, every adapter is connected
  and the App Servers in use are up, and the bot is not draining; else 503 with the check
  that failed.
- ``GET /metrics`` — Prometheus text format (see :mod:`lettabot.runtime.metrics`).

Served on its own port (``lettabot run --health-port``); no secrets in any answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
from anyio.abc import SocketStream, TaskStatus

from lettabot.runtime.metrics import CONTENT_TYPE

__all__ = ["Observable", "serve_health"]

log = logging.getLogger("lettabot.runtime.health")

_MAX_REQUEST = 8192
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class Observable(Protocol):
    """What the endpoint reads (the :class:`~lettabot.runtime.bot.Bot` is one)."""

    def health(self) -> dict[str, Any]: ...

    async def readiness(self) -> dict[str, Any]: ...

    @property
    def metrics(self) -> Any: ...


def _response(status: int, body: bytes, content_type: str, head_only: bool = False) -> bytes:
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\ncache-control: no-store\r\n"
            "connection: close\r\n\r\n")
    return head.encode() + (b"" if head_only else body)


def _json(status: int, body: dict[str, Any], head_only: bool = False) -> bytes:
    return _response(status, json.dumps(body).encode(), "application/json", head_only)


async def _answer(method: str, path: str, bot: Observable) -> bytes:
    head = method == "HEAD"

    async def healthz() -> bytes:
        return _json(200, bot.health(), head)

    async def readyz() -> bytes:
        body = await bot.readiness()
        return _json(200 if body.get("status") == "ok" else 503, body, head)

    async def metrics() -> bytes:
        return _response(200, bot.metrics.render(), CONTENT_TYPE, head)

    routes: dict[str, Callable[[], Awaitable[bytes]]] = {
        "/healthz": healthz, "/readyz": readyz, "/metrics": metrics}
    if path not in routes:
        return _json(404, {"error": f"no route {path}", "routes": sorted(routes)})
    if method not in ("GET", "HEAD"):
        return _json(405, {"error": "use GET"})
    return await routes[path]()


async def _handle(stream: SocketStream, bot: Observable) -> None:
    async with stream:
        request = b""
        with anyio.move_on_after(5):
            while b"\r\n\r\n" not in request and len(request) < _MAX_REQUEST:
                try:
                    request += await stream.receive(4096)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
        parts = request.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) < 2:
            return
        method, path = parts[0], parts[1].split("?", 1)[0]
        try:
            answer = await _answer(method, path, bot)
        except Exception:
            log.exception("%s %s failed", method, path)
            answer = _json(503, {"status": "error", "error": "see the log"})
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(answer)


async def serve_health(
    bot: Observable,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; reports the bound port through ``task_status``."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        bound = listener.extra(anyio.abc.SocketAttribute.local_port)
        log.info("health endpoint on http://%s:%s (/healthz, /readyz, /metrics)", host, bound)
        task_status.started(bound)
        await listener.serve(lambda stream: _handle(stream, bot))
