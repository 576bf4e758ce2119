"""The web chat's HTTP edge: oversized bodies are refused before they are read, and a
failure shows the browser a reference, never internals."""

from __future__ import annotations

import json
import socket
from typing import Any

import anyio
import pytest
from lettabot_web.app import MAX_BODY, build_app
from lettabot_web.hub import Hub
from lettabot_web.settings import WebSettings

from lettabot.runtime.adapter import CommandResult, DecisionOutcome, InboundMessage, Scope
from tests.web.conftest import RunningBot

TOKEN = "test-token-" + "x" * 24
AUTH = (b"authorization", f"Bearer {TOKEN}".encode())


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.split("/")[2].split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_a_huge_declared_body_is_refused_before_it_is_sent(demo_bot: RunningBot) -> None:
    head = (f"POST /api/send HTTP/1.1\r\nHost: {demo_bot.url.split('/')[2]}\r\n"
            f"Authorization: Bearer {demo_bot.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n")
    answer = _raw(demo_bot.url, head.encode())  # no body follows: the server must not wait
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_chunked_body_past_the_limit_is_refused(demo_bot: RunningBot) -> None:
    head = (f"POST /api/send HTTP/1.1\r\nHost: {demo_bot.url.split('/')[2]}\r\n"
            f"Authorization: Bearer {demo_bot.token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * (MAX_BODY + 10)
    answer = _raw(demo_bot.url, head.encode() + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


class _FailingBot:
    async def handle_message(self, message: InboundMessage) -> None:
        raise RuntimeError("database at postgresql://bot:PGSECRET@10.0.0.5/bot is down")

    async def decide_approval(self, request_id: str, decision: Any, user_id: str,
                              user_name: str = "") -> DecisionOutcome:
        raise AssertionError

    async def run_command(self, scope: Scope, user_id: str, command: str,
                          args: str = "") -> CommandResult:
        raise AssertionError

    def may_talk(self, adapter: str, user_id: str) -> bool:
        return True


@pytest.mark.anyio
async def test_a_failure_names_no_internals(caplog: pytest.LogCaptureFixture) -> None:
    app = build_app(WebSettings(token=TOKEN), Hub(), _FailingBot())
    payload = json.dumps({"tab": "tab-errors", "text": "hello"}).encode()
    sent: list[dict[str, Any]] = []
    done = anyio.Event()

    async def receive() -> dict[str, Any]:
        if done.is_set():
            await anyio.sleep_forever()
        done.set()
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/send", "raw_path": b"/api/send", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8787),
        "headers": [(b"host", b"127.0.0.1:8787"), (b"content-type", b"application/json"), AUTH,
                    (b"content-length", str(len(payload)).encode())],
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert status == 500
    assert b"PGSECRET" not in body and b"postgresql" not in body and b"ref " in body
    assert "ref " in caplog.text  # the operator finds the traceback by its reference


async def _get(app: Any, path: str, query: str, headers: list[tuple[bytes, bytes]] | None = None,
               ) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
               "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
               "query_string": query.encode(), "root_path": "", "client": ("127.0.0.1", 5000),
               "server": ("127.0.0.1", 8787),
               "headers": [(b"host", b"127.0.0.1:8787"),
                           *([AUTH] if headers is None else headers)]},
              receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, body


@pytest.mark.anyio
async def test_a_file_the_agent_sends_is_a_download_for_its_tab_only() -> None:
    from lettabot_web.adapter import WebAdapter
    from lettabot_web.app import scope_for

    adapter = WebAdapter(WebSettings(port=0, token=TOKEN), _FailingBot())  # type: ignore[arg-type]
    page = b"<script>alert(document.cookie)</script>"
    await adapter.send_file(scope_for("tab-files-1"), "report.html", page, comment="The page")
    [item] = adapter.hub.snapshot("tab-files-1")
    assert item["text"] == "The page" and item["file"]["name"] == "report.html"
    status, headers, body = await _get(adapter.app, f"/api/file/{item['file']['id']}",
                                       "tab=tab-files-1")
    assert status == 200 and body == page
    # never rendered by the browser: a download, whatever the agent put in it
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"].startswith("attachment;")
    assert headers["x-content-type-options"] == "nosniff"
    other, _, _ = await _get(adapter.app, f"/api/file/{item['file']['id']}", "tab=tab-other-2")
    assert other == 404


@pytest.mark.anyio
async def test_the_agent_reacts_to_a_message_in_the_web_chat() -> None:
    from lettabot_web.adapter import WebAdapter
    from lettabot_web.app import scope_for

    adapter = WebAdapter(WebSettings(port=0, token=TOKEN), _FailingBot())  # type: ignore[arg-type]
    adapter.hub.add("tab-react-1", "user", "ship it", message_id="web-tab-react-1-m1")
    await adapter.react(scope_for("tab-react-1"), "web-tab-react-1-m1", "🚀")
    await adapter.react(scope_for("tab-react-1"), "web-tab-react-1-m1", "🚀")
    [item] = adapter.hub.snapshot("tab-react-1")
    assert item["reactions"] == ["🚀"]
    with pytest.raises(ValueError):
        await adapter.react(scope_for("tab-react-1"), "web-tab-react-1-gone", "🚀")


def test_the_web_chat_wants_a_token_unless_auth_is_none() -> None:
    from lettabot_web.settings import WebSettingsError

    with pytest.raises(WebSettingsError, match=r"web\.token"):
        WebSettings()
    assert not WebSettings(token=TOKEN).token_ok(None)
    assert WebSettings(auth="none").token_ok(None)
    with pytest.raises(WebSettingsError, match=r"web\.auth"):
        WebSettings(auth="none", token=TOKEN)


def test_a_token_is_generated_once_into_the_data_dir(tmp_path: Any) -> None:
    from types import SimpleNamespace

    from lettabot_web.adapter import create_adapter

    bot = SimpleNamespace(config=SimpleNamespace(data_dir=tmp_path), demo=False)
    first = create_adapter({"port": 0}, bot)  # type: ignore[arg-type]
    token = first.settings.token
    assert token and len(token) >= 24
    stored = tmp_path / "web-token"
    assert stored.read_text().strip() == token and stored.stat().st_mode & 0o777 == 0o600
    assert first.where().endswith(f"/?token={token}")  # printed with the address
    stored.chmod(0o644)
    again = create_adapter({"port": 0}, bot)  # type: ignore[arg-type]
    assert again.settings.token == token  # reused after a restart
    assert stored.stat().st_mode & 0o777 == 0o600
    configured = create_adapter({"port": 0, "token": TOKEN}, bot)  # type: ignore[arg-type]
    assert TOKEN not in configured.where() and "<web.token>" in configured.where()


def test_auth_none_is_warned_at_every_start(caplog: pytest.LogCaptureFixture) -> None:
    from lettabot_web.adapter import WebAdapter

    adapter = WebAdapter(WebSettings(port=0, auth="none"), _FailingBot())  # type: ignore[arg-type]
    adapter._announce()
    assert 'web.auth = "none"' in caplog.text and "approve" in caplog.text


@pytest.mark.anyio
async def test_without_the_token_nothing_is_served() -> None:
    app = build_app(WebSettings(token=TOKEN), Hub(), _FailingBot())
    assert (await _get(app, "/", "", headers=[]))[0] == 401
    assert (await _get(app, "/", "token=wrong", headers=[]))[0] == 401
    assert (await _get(app, "/api/file/x", "tab=tab-files-1", headers=[]))[0] == 401
    status, headers, _ = await _get(app, "/", f"token={TOKEN}", headers=[])
    assert status == 303 and TOKEN in headers["set-cookie"] and "httponly" in headers[
        "set-cookie"].lower()
    cookie = headers["set-cookie"].split(";")[0].encode()
    assert (await _get(app, "/", "", headers=[(b"cookie", cookie)]))[0] == 200
    assert (await _get(app, "/healthz", "", headers=[]))[0] == 200
