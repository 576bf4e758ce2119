"""``servers.urls``: conversations on an App Server lettabot did not start (token auth)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lettabot.runtime.bot import Bot
from lettabot.testing.app_server import external_app_server
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from tests.runtime.bot_fixtures import make_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def remote_server(letta_home: LettaHome) -> Iterator[str]:
    with external_app_server("remote-capability-token", letta_home.workdir) as url:
        yield url


async def test_conversations_run_on_a_remote_app_server(
    letta_home: LettaHome, remote_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LETTA_APP_SERVER_URL", "")  # restored after the test
    monkeypatch.setenv("LETTA_APP_SERVER_TOKEN", "")
    config = make_config(letta_home, tmp_path / "data", servers={
        "count": 0, "urls": [{"url": remote_server, "token": "remote-capability-token"}]})
    async with Bot.open(config, grace=5) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        scope = chat.scope("C1", "remote")
        await chat.push("over the wire", scope=scope)
        await chat.wait_done(scope)
        assert chat.texts(scope) == ["You said: over the wire"]
        [server] = bot.health()["servers"]
        assert server["url"].startswith(remote_server.rstrip("/")) and server["pid"] is None
