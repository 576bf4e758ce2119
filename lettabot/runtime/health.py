"""A tiny health endpoint: ``GET /healthz`` (and ``/readyz``) → the bot's health as JSON.

200 while the bot is ok, 503 while it drains or an App Server is down. Served on its own
port (``lettabot run --health-port``); an adapter with an HTTP server of its own (the web
chat) can serve ``bot.health()`` itself instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskStatus

__all__ = ["serve_health"]

log = logging.getLogger("lettabot.runtime.health")

_MAX_REQUEST = 8192


def _response(status: int, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
              503: "Service Unavailable"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\nconnection: close\r\n\r\n")
    return head.encode() + data


async def _handle(stream: SocketStream, health: Callable[[], dict[str, Any]]) -> None:
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
        if path not in ("/healthz", "/readyz"):
            answer = _response(404, {"error": f"no route {path}"})
        elif method != "GET":
            answer = _response(405, {"error": "use GET"})
        else:
            body = health()
            answer = _response(200 if body.get("status") == "ok" else 503, body)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(answer)


async def serve_health(
    health: Callable[[], dict[str, Any]],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; reports the bound port through ``task_status``."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        bound = listener.extra(anyio.abc.SocketAttribute.local_port)
        log.info("health endpoint on http://%s:%s/healthz", host, bound)
        task_status.started(bound)
        await listener.serve(lambda stream: _handle(stream, health))
