"""Local stand-ins for the Anthropic and OpenAI APIs, for tests that run the real CLI offline.

The CLI's local backend talks to ``anthropic`` through the Messages API
(``POST <base>/v1/messages``, streamed server-sent events) and to ``openai`` through the
Responses API (``POST <base>/responses``, streamed); ``openai-compatible`` uses chat
completions, which :class:`~lettabot.testing.scripted_model.ScriptedModelServer` speaks. Each
stand-in answers every turn with ``"<name> says: <the user's last text>"``, checks the key
the way its provider sends it (``x-api-key`` with ``anthropic-version``; ``Authorization:
Bearer``), and records every request (path, headers, body) in :attr:`StandIn.requests`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["AnthropicStandIn", "OpenAIStandIn", "Seen", "StandIn"]

_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)


@dataclass(frozen=True)
class Seen:
    """One request the stand-in received."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: dict[str, Any]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content
                         if isinstance(p, dict) and "text" in p)
    return ""


class StandIn:
    """The server: ``with AnthropicStandIn(api_key=K) as api: ... api.base_url``."""

    name = "stand-in"

    def __init__(self, *, api_key: str, host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> StandIn:
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name=f"{self.name} stand-in", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def turns(self) -> list[Seen]:
        """The model calls (not the key checks or model lists)."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def reply_to(self, body: dict[str, Any]) -> str:
        return f"{self.name} says: {self.user_text(body)}"

    # -- what each API looks like ---------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def route(self, method: str, path: str) -> str | None:
        """``models`` / ``turn`` / None (unknown)."""
        raise NotImplementedError

    def models(self) -> dict[str, Any]:
        raise NotImplementedError

    def user_text(self, body: dict[str, Any]) -> str:
        raise NotImplementedError

    def events(self, body: dict[str, Any], text: str) -> Iterator[tuple[str, dict[str, Any]]]:
        raise NotImplementedError


class AnthropicStandIn(StandIn):
    """The Messages API (``base_url`` without ``/v1``, as ``ANTHROPIC_BASE_URL``)."""

    name = "anthropic"

    def authorized(self, headers: dict[str, str]) -> bool:
        return (headers.get("x-api-key") == self.api_key
                and bool(headers.get("anthropic-version")))

    def route(self, method: str, path: str) -> str | None:
        if method == "GET" and path.startswith("/v1/models"):
            return "models"
        if method == "POST" and path.startswith("/v1/messages"):
            return "turn"
        return None

    def models(self) -> dict[str, Any]:
        return {"data": [{"type": "model", "id": "claude-sonnet-4-5",
                          "display_name": "Claude Sonnet 4.5"}], "has_more": False}

    def user_text(self, body: dict[str, Any]) -> str:
        for message in reversed(body.get("messages") or []):
            if message.get("role") == "user":
                text = _REMINDER.sub("", _text(message.get("content"))).strip()
                if text:
                    return text
        return ""

    def events(self, body: dict[str, Any], text: str) -> Iterator[tuple[str, dict[str, Any]]]:
        usage = {"input_tokens": 10, "output_tokens": 1}
        yield "message_start", {"type": "message_start", "message": {
            "id": "msg_standin", "type": "message", "role": "assistant",
            "model": body.get("model", ""), "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": usage}}
        yield "content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}}
        for i in range(0, len(text), 16):
            yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta",
                                                    "text": text[i:i + 16]}}
        yield "content_block_stop", {"type": "content_block_stop", "index": 0}
        yield "message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": 5}}
        yield "message_stop", {"type": "message_stop"}


class OpenAIStandIn(StandIn):
    """The Responses API (``base_url`` with ``/v1``, as ``OPENAI_BASE_URL``)."""

    name = "openai"

    @property
    def base_url(self) -> str:
        return super().base_url + "/v1"

    def authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization") == f"Bearer {self.api_key}"

    def route(self, method: str, path: str) -> str | None:
        if method == "GET" and path.startswith("/v1/models"):
            return "models"
        if method == "POST" and path.startswith("/v1/responses"):
            return "turn"
        return None

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "gpt-4.1", "object": "model",
                                            "created": 0, "owned_by": "openai"}]}

    def user_text(self, body: dict[str, Any]) -> str:
        items = body.get("input")
        for item in reversed(items if isinstance(items, list) else []):
            if isinstance(item, dict) and item.get("role") == "user":
                content = item.get("content")
                parts = content if isinstance(content, list) else [{"text": content}]
                text = "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
                text = _REMINDER.sub("", text).strip()
                if text:
                    return text
        return ""

    def events(self, body: dict[str, Any], text: str) -> Iterator[tuple[str, dict[str, Any]]]:
        item_id, model = "msg_standin", body.get("model", "")
        part = {"type": "output_text", "text": "", "annotations": []}
        item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant",
                "content": []}
        response = {"id": "resp_standin", "object": "response", "created_at": 0,
                    "status": "in_progress", "model": model, "output": []}
        seq = iter(range(1_000_000))
        yield "response.created", {"type": "response.created", "sequence_number": next(seq),
                                   "response": response}
        yield "response.output_item.added", {
            "type": "response.output_item.added", "sequence_number": next(seq),
            "output_index": 0, "item": item}
        yield "response.content_part.added", {
            "type": "response.content_part.added", "sequence_number": next(seq),
            "item_id": item_id, "output_index": 0, "content_index": 0, "part": part}
        for i in range(0, len(text), 16):
            yield "response.output_text.delta", {
                "type": "response.output_text.delta", "sequence_number": next(seq),
                "item_id": item_id, "output_index": 0, "content_index": 0,
                "delta": text[i:i + 16]}
        done_part = {**part, "text": text}
        yield "response.output_text.done", {
            "type": "response.output_text.done", "sequence_number": next(seq),
            "item_id": item_id, "output_index": 0, "content_index": 0, "text": text}
        yield "response.content_part.done", {
            "type": "response.content_part.done", "sequence_number": next(seq),
            "item_id": item_id, "output_index": 0, "content_index": 0, "part": done_part}
        done_item = {**item, "status": "completed", "content": [done_part]}
        yield "response.output_item.done", {
            "type": "response.output_item.done", "sequence_number": next(seq),
            "output_index": 0, "item": done_item}
        usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                 "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens_details": {"reasoning_tokens": 0}}
        yield "response.completed", {
            "type": "response.completed", "sequence_number": next(seq),
            "response": {**response, "status": "completed", "output": [done_item],
                         "usage": usage}}


def _handler(api: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {}
            headers = {k.lower(): v for k, v in self.headers.items()}
            with api._lock:
                api.requests.append(Seen(self.command, self.path, headers,
                                         body if isinstance(body, dict) else {}))
            what = api.route(self.command, self.path)
            if what is None:
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            if not api.authorized(headers):
                return self._json(401, {"type": "error", "error": {
                    "type": "authentication_error", "message": "invalid x-api-key"}})
            if what == "models":
                return self._json(200, api.models())
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for event, data in api.events(body, api.reply_to(body)):
                    self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = _serve

    return Handler
