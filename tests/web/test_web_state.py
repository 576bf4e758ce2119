"""What the web chat keeps across restarts (its conversations, the answers offered a rating)
and ``web.port = 0``: no browser, no Letta."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lettabot_web.settings import WebConfig, WebSettings

TOKEN = "test-token-" + "x" * 24


class _Bot:
    demo = False

    def __init__(self, data_dir: Path | None = None) -> None:
        self.config = SimpleNamespace(data_dir=data_dir)


def test_port_0_listens_on_a_free_port_and_says_which(tmp_path: Path) -> None:
    """No pick-then-bind race: the adapter binds port 0 and reports the port it got, in
    its address and in the page's cookie name (cookies are per host, not per port)."""
    from lettabot_web.adapter import WebAdapter, create_adapter

    assert WebConfig(port=0).port == 0  # LETTABOT_WEB__PORT=0 is accepted
    adapter = WebAdapter(WebSettings(port=0, token=TOKEN), _Bot())  # type: ignore[arg-type]
    try:
        assert adapter.port != 0 and adapter.settings.port == adapter.port
        assert adapter.url == f"http://127.0.0.1:{adapter.port}/"
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", adapter.port))  # it is ours from now on
        created = create_adapter({"port": 0}, _Bot(tmp_path))  # type: ignore[arg-type]
        assert created.port not in (0, adapter.port)
        assert f":{created.port}/?token=" in created.where()
        created._socket.close()
    finally:
        adapter._socket.close()


def test_the_cookie_is_named_after_the_bound_port() -> None:
    import anyio
    from lettabot_web.adapter import WebAdapter

    adapter = WebAdapter(WebSettings(port=0, token=TOKEN), _Bot())  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def get() -> None:
        await adapter.app({
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": "/", "raw_path": b"/",
            "query_string": f"token={TOKEN}".encode(), "root_path": "",
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", adapter.port),
            "headers": [(b"host", f"127.0.0.1:{adapter.port}".encode())]}, receive, send)

    try:
        anyio.run(get)
    finally:
        adapter._socket.close()
    start = next(m for m in sent if m["type"] == "http.response.start")
    cookie = dict(start["headers"])[b"set-cookie"].decode()
    assert cookie.startswith(f"lettabot_web_{adapter.port}=")


def test_conversations_are_kept_per_user_across_restarts(tmp_path: Path) -> None:
    from lettabot_web.state import WebState

    path = tmp_path / "web-chat.json"
    state = WebState(path)
    assert state.touch("web-user", "tab-aaaaaa", "  first\nquestion about the build  ")
    assert not state.touch("web-user", "tab-aaaaaa", "a later message")  # title stays
    state.touch("web-user", "tab-bbbbbb", "x" * 500)
    state.touch("someone", "tab-cccccc", "not yours")
    again = WebState(path)  # a restart
    listed = again.conversations("web-user")
    assert [c["tab"] for c in listed] == ["tab-bbbbbb", "tab-aaaaaa"]  # newest first
    assert listed[1]["title"] == "first question about the build"
    assert len(listed[0]["title"]) <= 80
    assert [c["tab"] for c in again.conversations("someone")] == ["tab-cccccc"]
    assert again.rename("web-user", "tab-aaaaaa", "  Build  ")
    assert not again.rename("web-user", "tab-cccccc", "theirs")  # another user's
    assert not again.rename("web-user", "tab-aaaaaa", "   ")
    assert WebState(path).conversations("web-user")[1]["title"] == "Build"
    assert path.stat().st_mode & 0o777 == 0o600


def test_ratings_follow_restored_answers(tmp_path: Path) -> None:
    from lettabot_web.state import WebState

    state = WebState(tmp_path / "web-chat.json")
    state.answer("tab-aaaaaa", "m1-2", "🔧 Bash\n\nTool result: hi")
    state.answer("tab-aaaaaa", "m1-4", "OK")
    state.answer("tab-aaaaaa", "m1-6", "OK")
    state.rate("tab-aaaaaa", "m1-6", "bad", "OK")
    restored = WebState(tmp_path / "web-chat.json").match(
        "tab-aaaaaa", ["Tool result: hi", "OK", "OK", "never offered"])
    assert restored == [("m1-2", "offered"), ("m1-4", "offered"), ("m1-6", "bad"), None]
