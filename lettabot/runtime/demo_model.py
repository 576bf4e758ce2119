"""A scripted OpenAI-compatible model server: ``lettabot run --demo``'s model (and the
tests', through :mod:`lettabot.testing.scripted_model`), and a Letta CLI home connected to
it (:func:`prepare_template`).

It speaks ``GET /v1/models`` and ``POST /v1/chat/completions`` (streaming and not),
and answers from a *script*: an ordered list of rules, each a matcher on the request
and a reply (text, tool calls, an HTTP error, a delay, or a hang). Requests no rule
matches fall through to a small built-in "demo brain" (echo, run a command, remember
a fact in the agent's memory files, recall it from the system prompt).

The server runs on its own thread, so a hanging reply never blocks the test's event
loop. Every request is recorded in :attr:`ScriptedModelServer.requests`.

Command line::

    lettabot-model-server --port 0
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "ChatRequest",
    "Reply",
    "Rule",
    "ScriptedModelServer",
    "ToolCall",
    "demo_brain",
    "home_env",
    "main",
    "prepare_template",
]

_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:16]}")


@dataclass(frozen=True)
class Reply:
    """What the model answers. Build with the class methods."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    status: int = 200
    error: str = ""
    delay: float = 0.0
    chunk_delay: float = 0.0
    hang: bool = False
    tokens: tuple[int, int] | None = None
    """The ``usage`` reported (prompt, completion); default 100 and a quarter of the text."""

    @classmethod
    def say(cls, text: str, *, delay: float = 0.0, chunk_delay: float = 0.0,
            tokens: tuple[int, int] | None = None) -> Reply:
        return cls(text=text, delay=delay, chunk_delay=chunk_delay, tokens=tokens)

    @classmethod
    def tool(cls, name: str, text: str = "", /, **arguments: Any) -> Reply:
        return cls(text=text, tool_calls=(ToolCall(name, arguments),))

    @classmethod
    def fail(cls, status: int = 500, error: str = "scripted failure") -> Reply:
        return cls(status=status, error=error)

    @classmethod
    def hanging(cls) -> Reply:
        return cls(hang=True)


@dataclass
class ChatRequest:
    """One chat-completions request as the model sees it."""

    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def system(self) -> str:
        return "\n".join(
            _text_of(m.get("content")) for m in self.messages if m.get("role") == "system"
        )

    @property
    def last(self) -> dict[str, Any]:
        msgs = self.messages
        return msgs[-1] if msgs else {}

    @property
    def after_tool(self) -> bool:
        """True when the CLI is sending back a tool's result."""
        return self.last.get("role") == "tool"

    @property
    def tool_result(self) -> str:
        return _text_of(self.last.get("content")) if self.after_tool else ""

    @property
    def user_text(self) -> str:
        """Text of the newest user message, without the CLI's system reminders."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return _REMINDER.sub("", _text_of(m.get("content"))).strip()
        return ""

    @property
    def images(self) -> list[str]:
        """The image URLs (``data:`` URIs) in the newest user message."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                content = m.get("content")
                return [str((p.get("image_url") or {}).get("url", ""))
                        for p in content if isinstance(p, dict)
                        and p.get("type") == "image_url"] if isinstance(content, list) else []
        return []

    @property
    def user_texts(self) -> list[str]:
        """Texts of all user messages in the request (the conversation so far)."""
        texts = []
        for m in self.messages:
            if m.get("role") == "user":
                text = _REMINDER.sub("", _text_of(m.get("content"))).strip()
                if text:
                    texts.append(text)
        return texts

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.body.get("tools") or []]

    @property
    def memory_dir(self) -> str | None:
        for m in self.messages:
            found = re.search(r"Memory directory[^`]*`([^`]+)`", _text_of(m.get("content")))
            if found:
                return found.group(1)
        return None


Matcher = Callable[[ChatRequest], bool]
Responder = Callable[[ChatRequest], "Reply | None"]


@dataclass
class Rule:
    match: Matcher
    reply: Reply | Responder
    times: int | None = None  # None: forever
    used: int = 0

    def answer(self, request: ChatRequest) -> Reply | None:
        if self.times is not None and self.used >= self.times:
            return None
        if not self.match(request):
            return None
        reply = self.reply(request) if callable(self.reply) else self.reply
        if reply is not None:
            self.used += 1
        return reply


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def demo_brain(request: ChatRequest) -> Reply:
    """The default behaviour when no rule matches.

    - after a tool ran: ``Tool result: <output>``
    - ``run: <command>``: calls Bash with that command
    - ``write <path>: <text>``: calls Write
    - ``remember: <fact>``: writes the fact as a memory file and commits it
    - ``... my first message ...``: quotes the conversation's first user message (history)
    - a question containing ``secret word``: answers from the system prompt (memory)
    - anything else: ``You said: <text>``
    """
    if request.after_tool:
        return Reply.say(f"Tool result: {request.tool_result.strip()[:2000]}")
    text = request.user_text
    if m := re.match(r"(?is)^run:\s*(.+)$", text):
        return Reply.tool("Bash", command=m.group(1).strip(), description="Run a command")
    if m := re.match(r"(?is)^write\s+(\S+?):\s*(.*)$", text):
        return Reply.tool("Write", file_path=m.group(1), content=m.group(2))
    if (m := re.match(r"(?is)^remember:\s*(.+)$", text)) and request.memory_dir:
        fact = m.group(1).strip()
        body = f"---\nname: notes\ndescription: Facts the user asked me to remember\n---\n{fact}\n"
        command = (
            f'cd "$MEMORY_DIR" && printf %s {_sh_quote(body)} > notes.md && '
            "git add notes.md && git commit -qm 'Remember a fact' && echo saved"
        )
        return Reply.tool("Bash", command=command, description="Save a fact to memory")
    if "my first message" in text.lower():
        first = request.user_texts[0] if request.user_texts else ""
        return Reply.say(f"Your first message was: {first}")
    if "secret word" in text.lower():
        found = re.search(r"secret word is (\w+)", request.system, re.I)
        return Reply.say(
            f"The secret word is {found.group(1)}." if found else "I don't know the secret word."
        )
    return Reply.say(f"You said: {text}")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: a thousand concurrent turns connect at once


class ScriptedModelServer:
    """The server. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: tuple[str, ...] = ("scripted",),
        fallback: Responder | None = demo_brain,
        chunk_size: int = 16,
        api_key: str | None = None,
        reply_seconds: float = 0.0,
    ) -> None:
        self.models = models
        self.reply_seconds = reply_seconds
        """When set, every reply without its own delay takes about this long, as a real
        model's does: a streamed one sends its chunks spread evenly over it (the first
        after one step), a whole one comes at the end. For capacity benchmarks."""
        self.api_key = api_key
        """When set, requests without ``Authorization: Bearer <api_key>`` get 401, as a
        real provider answers a wrong key."""
        self.fallback = fallback
        self.chunk_size = chunk_size
        self.rules: list[Rule] = []
        self.requests: list[ChatRequest] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = _HTTPServer((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    # -- script -------------------------------------------------------------

    def on(
        self,
        match: str | re.Pattern[str] | Matcher,
        reply: Reply | Responder | str,
        *,
        times: int | None = None,
    ) -> Rule:
        """Add a rule. A string matches a substring of the user's text; a pattern searches it."""
        if isinstance(match, str):
            needle = match
            matcher: Matcher = lambda r: not r.after_tool and needle in r.user_text  # noqa: E731
        elif isinstance(match, re.Pattern):
            pattern = match
            matcher = lambda r: not r.after_tool and bool(pattern.search(r.user_text))  # noqa: E731
        else:
            matcher = match
        rule = Rule(matcher, Reply.say(reply) if isinstance(reply, str) else reply, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset(self) -> None:
        with self._lock:
            self.rules.clear()
            self.requests.clear()

    def answer(self, request: ChatRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            for rule in self.rules:
                reply = rule.answer(request)
                if reply is not None:
                    return reply
        if self.fallback is not None and (reply := self.fallback(request)) is not None:
            return reply
        return Reply.say("")

    # -- lifecycle ----------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ScriptedModelServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="scripted-model", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rendering ----------------------------------------------------------

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the server is closing; returns False when it is."""
        return not self._closing.wait(seconds)


_ids = itertools.count(1)


def _completion(model: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in reply.tool_calls
        ]
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": _usage(reply),
    }


def _usage(reply: Reply) -> dict[str, int]:
    if reply.tokens is not None:
        prompt, completion = reply.tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}
    completion = max(1, len(reply.text) // 4)
    return {"prompt_tokens": 100, "completion_tokens": completion, "total_tokens": 100 + completion}


def _chunks(model: str, reply: Reply, size: int) -> Iterator[dict[str, Any]]:
    cid = f"chatcmpl-{next(_ids)}"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield chunk({"role": "assistant", "content": ""})
    for i in range(0, len(reply.text), size):
        yield chunk({"content": reply.text[i : i + size]})
    for n, call in enumerate(reply.tool_calls):
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": n,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                ]
            }
        )
    yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
    final = chunk({})
    final["choices"] = []
    final["usage"] = _usage(reply)
    yield final


def _paced(reply: Reply, server: ScriptedModelServer, stream: bool) -> Reply:
    """``reply`` spread over the server's ``reply_seconds`` (unless it has its own pace)."""
    total = server.reply_seconds
    if total <= 0 or reply.hang or reply.delay or reply.chunk_delay or reply.status != 200:
        return reply
    if not stream:
        return replace(reply, delay=total)
    # A streamed reply's events: the opening one, one per text chunk and per tool call,
    # the finish and the usage; a pause comes before the first and after each.
    pauses = -(-len(reply.text) // server.chunk_size) + len(reply.tool_calls) + 4
    step = total / pauses
    return replace(reply, delay=step, chunk_delay=step)


def _handler_for(server: ScriptedModelServer) -> type[BaseHTTPRequestHandler]:
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

        def _authorized(self) -> bool:
            if server.api_key is None:
                return True
            if self.headers.get("authorization") == f"Bearer {server.api_key}":
                return True
            self._json(401, {"error": {"message": "Incorrect API key provided",
                                       "type": "invalid_request_error",
                                       "code": "invalid_api_key"}})
            return False

        def do_GET(self) -> None:
            if self.path in ("/health", "/healthz"):
                self._json(200, {"ok": True})
                return
            if not self._authorized():
                return
            if self.path.rstrip("/").endswith("/models"):
                data = [
                    {"id": m, "object": "model", "created": 0, "owned_by": "lettabot"}
                    for m in server.models
                ]
                self._json(200, {"object": "list", "data": data})
            elif self.path in ("/health", "/healthz"):
                self._json(200, {"ok": True})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._json(400, {"error": {"message": "invalid JSON"}})
                return
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            if not self._authorized():
                return
            reply = _paced(server.answer(ChatRequest(body)), server, bool(body.get("stream")))
            if reply.hang:
                while server.sleep(0.2):
                    pass
                return
            if reply.delay and not server.sleep(reply.delay):
                return
            if reply.status != 200:
                self._json(
                    reply.status,
                    {"error": {"message": reply.error, "type": "scripted", "code": reply.status}},
                )
                return
            model = str(body.get("model") or server.models[0])
            if not body.get("stream"):
                self._json(200, _completion(model, reply))
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for event in _chunks(model, reply, server.chunk_size):
                    self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                    self.wfile.flush()
                    if reply.chunk_delay and not server.sleep(reply.chunk_delay):
                        return
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def prepare_template(root: Path, base_url: str, *, cli: str | None = None) -> Path:
    """Run the real CLI once to make a home connected to ``base_url``; return it."""
    cli = cli or _letta_cli()
    home = root / "home"
    (home / "work").mkdir(parents=True, exist_ok=True)
    env = home_env(home, os.environ)
    for args in (
        ["backend", "local"],
        ["connect", "openai-compatible", "--base-url", base_url],
    ):
        done = subprocess.run(
            [cli, *args], env=env, cwd=home, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"letta {' '.join(args)} failed: {done.stderr or done.stdout}")
    return home


def home_env(home: Path, base: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """``base`` with the variables that select the CLI home ``home`` (and no Letta Cloud)."""
    env = dict(base)
    env["HOME"] = str(home)
    env["LETTA_LOCAL_BACKEND_DIR"] = str(home / ".letta" / "lc-local-backend")
    env.pop("LETTA_API_KEY", None)
    env.pop("LETTA_BASE_URL", None)
    return env


def _letta_cli() -> str:
    from lettabot.sdk import find_cli

    return find_cli()


def main(argv: list[str] | None = None) -> None:
    """Run the server with the demo brain until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with ScriptedModelServer(args.host, args.port) as server:
        print(f"Scripted model server listening on {server.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
