"""``servers.urls``: conversations on an App Server lettabot did not start (token auth)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from lettabot.runtime.bot import Bot
from lettabot.testing.app_server import ExternalAppServer, external_app_server
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from tests.runtime.bot_fixtures import make_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def remote(letta_home: LettaHome) -> Iterator[ExternalAppServer]:
    with external_app_server("remote-capability-token", letta_home.workdir) as server:
        yield server


@pytest.fixture
def remote_server(remote: ExternalAppServer) -> str:
    return remote.url


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


async def test_a_prompt_open_when_the_remote_server_drops_is_cancelled_at_once(
    letta_home: LettaHome, remote: ExternalAppServer, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No pid to poll: the dropped connection itself cancels the prompt, and a late click
    does not claim the tool ran."""
    monkeypatch.setenv("LETTA_APP_SERVER_URL", "")
    monkeypatch.setenv("LETTA_APP_SERVER_TOKEN", "")
    config = make_config(letta_home, tmp_path / "data", servers={
        "count": 0, "urls": [{"url": remote.url, "token": "remote-capability-token"}]})
    target = letta_home.workdir / "never-remote.txt"
    async with Bot.open(config, grace=5) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        scope = chat.scope("C2", "remote-prompt")
        await chat.push(f"run: echo x > {target}", scope=scope)
        prompt = await chat.wait_prompt(scope)
        remote.kill()
        with anyio.fail_after(10):
            assert await chat.wait_resolved(prompt) == "Cancelled: the agent's server stopped"
        await chat.wait_done(scope)
        assert "server stopped" in chat.texts(scope)[-1]
        late = await chat.click(prompt.request_id, "approve", user="U1")
        assert late.status == "unknown"
    assert not target.exists()


async def test_remote_and_local_servers_both_take_conversations(
    letta_home: LettaHome, remote: ExternalAppServer, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every configured server takes conversations (the first url used to take them all)."""
    monkeypatch.setenv("LETTA_APP_SERVER_URL", "")
    monkeypatch.setenv("LETTA_APP_SERVER_TOKEN", "")
    config = make_config(letta_home, tmp_path / "data", servers={
        "count": 1, "urls": [{"url": remote.url, "token": "remote-capability-token"}]})
    async with Bot.open(config, grace=5) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        scopes = [chat.scope("C3", f"spread-{i}") for i in range(4)]
        for i, scope in enumerate(scopes):
            await chat.push(f"spread {i}", scope=scope)
            await chat.wait_done(scope)
            assert chat.texts(scope) == [f"You said: spread {i}"]
        used = {bot.conversations.open_now[s.key].server for s in scopes}
        assert used == {0, 1}
        [on_remote, local] = bot.health()["servers"]
        assert on_remote["url"] == remote.url and on_remote["pid"] is None
        assert local["pid"] and local["alive"]
        await bot.scheduler.release_idle(older_than=0)
        for i, scope in enumerate(scopes):  # reopened on the server the hash names
            await chat.push("what was my first message?", scope=scope)
            await chat.wait_done(scope, 2)
            assert chat.texts(scope)[-1] == f"Your first message was: spread {i}"
