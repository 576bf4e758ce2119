"""Provider keys stay with lettabot: a loopback endpoint that adds them.

The CLI (and so every tool it runs) can read its own home, where ``letta connect`` would
store a provider key. Instead, for providers the CLI reaches by base URL
(``openai-compatible``, ``ollama``, ``lmstudio``, ``llama-cpp``, and ``anthropic`` and
``openai``, whose connection record in the CLI's local backend takes a ``base_url`` too),
lettabot connects the CLI to ``http://127.0.0.1:<port>/p/<n>`` with a random **stand-in** key
made at each start, and this endpoint forwards each request to the real base URL with the real
key in place of the stand-in, sent as the provider expects it (``Authorization: Bearer``, or
Anthropic's ``x-api-key``; other headers such as ``anthropic-version`` pass unchanged).
The stand-in is worth nothing elsewhere (it opens only this endpoint, only while lettabot
runs); the real key is only in lettabot's memory. Shell commands have no network
by default (:mod:`lettabot.runtime.sandbox`), so they cannot reach the endpoint either.

A plain threaded HTTP server (stdlib, off the event loop): one thread per request, each
streaming the provider's answer through unchanged (server-sent events included).
"""

from __future__ import annotations

import hmac
import http.client
import json
import logging
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = ["KeyProxy", "Upstream"]

log = logging.getLogger("lettabot.runtime.keyproxy")

_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                  "te", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
                  "authorization", "x-api-key", "api-key"})
"""Headers not forwarded as they came (hop-by-hop, and the stand-in credential)."""


@dataclass(frozen=True)
class Upstream:
    """Where one provider's requests go, and the key they carry."""

    base_url: str
    key: str | None
    auth: Literal["bearer", "x-api-key"] = "bearer"
    """How the provider takes its key: ``Authorization: Bearer <key>`` (OpenAI and
    OpenAI-compatible servers) or ``x-api-key: <key>`` (Anthropic)."""


class KeyProxy:
    """The endpoint. ``add`` an upstream (before or after ``start``), give the CLI
    :meth:`url_for` and :attr:`stand_in`, ``stop`` at the end."""

    def __init__(self, host: str = "127.0.0.1", *, timeout: float = 600.0) -> None:
        self.stand_in = "lettabot-local-" + secrets.token_urlsafe(24)
        """The key the CLI is given: opens this endpoint, nothing else."""
        self.timeout = timeout
        self._upstreams: dict[str, Upstream] = {}
        self._server = ThreadingHTTPServer((host, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def add(self, upstream: Upstream) -> str:
        """Register ``upstream``; returns the base URL the CLI uses for it."""
        name = str(len(self._upstreams))
        self._upstreams[name] = upstream
        return self.url_for(name)

    def url_for(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/p/{name}"

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            name="lettabot key proxy", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    # -- one request -----------------------------------------------------------------

    def authorized(self, headers: Any) -> bool:
        given = headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else given
        given = given or headers.get("x-api-key", "") or headers.get("api-key", "")
        return hmac.compare_digest(given.encode(), self.stand_in.encode())

    def upstream(self, path: str) -> tuple[Upstream, str] | None:
        """The upstream named by ``/p/<name>/<rest>`` and the rest (query kept)."""
        if not path.startswith("/p/"):
            return None
        name, _, rest = path[3:].partition("/")
        found = self._upstreams.get(name)
        return (found, "/" + rest) if found is not None else None


def _handler(proxy: KeyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("key proxy: " + format, *args)

        def _refuse(self, status: int, message: str) -> None:
            body = json.dumps({"error": {"message": message}}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self) -> None:
            target = proxy.upstream(self.path)
            if target is None:
                return self._refuse(404, "unknown provider route")
            if not proxy.authorized(self.headers):
                return self._refuse(401, "this endpoint serves lettabot's own CLI only")
            upstream, rest = target
            base = urllib.parse.urlsplit(upstream.base_url)
            path = base.path.rstrip("/") + rest
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            if upstream.key and upstream.auth == "x-api-key":
                headers["x-api-key"] = upstream.key
            elif upstream.key:
                headers["Authorization"] = f"Bearer {upstream.key}"
            connection_type = (http.client.HTTPSConnection if base.scheme == "https"
                               else http.client.HTTPConnection)
            conn = connection_type(base.netloc, timeout=proxy.timeout)
            try:
                conn.request(self.command, path, body=body, headers=headers)
                answer = conn.getresponse()
            except OSError as exc:
                conn.close()
                why = exc.__class__.__name__
                return self._refuse(502, f"the provider could not be reached ({why})")
            try:
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                while chunk := answer.read1(65536):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True  # the CLI went away mid-answer
            finally:
                conn.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    return Handler
