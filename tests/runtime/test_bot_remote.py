"""``servers.urls``: conversations on an App Server lettabot did not start (token auth)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lettabot.runtime.bot import Bot
from lettabot.sdk._internal.cli import cli_env, find_cli
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from tests.runtime.bot_fixtures import make_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def remote_server(letta_home: LettaHome, tmp_path: Path) -> Iterator[str]:
    token_file = tmp_path / "token"
    token_file.write_text("remote-capability-token\n")
    proc = subprocess.Popen(
        [find_cli(), "server", "--listen", "ws://127.0.0.1:0", "--ws-auth", "capability-token",
         "--ws-token-file", str(token_file)],
        env=cli_env(), cwd=letta_home.workdir, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    url = None
    for line in proc.stdout:
        if "Listening on " in line:
            url = line.split("Listening on ", 1)[1].split()[0]
            break
    assert url, "letta server did not start"
    yield url
    proc.terminate()
    proc.wait(10)


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
