"""A cluster whose agent lives on an App Server host that stops: the inbox's jobs for it are
retried (not finished) until the host is back, then answered once, in order, with no
takeover notice; the thread is told once."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from lettabot.runtime.bot import Bot
from lettabot.testing.app_server import LettabotHost
from lettabot.testing.chat import Posted, TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.postgres import fresh_database
from tests.runtime.bot_fixtures import make_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TOKEN = "cluster-host-token"
NOTE = "host alpha is unreachable; your message will be answered when it is back"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cluster_db() -> Iterator[str]:
    with fresh_database("lettabot_hosts_cluster") as url:
        yield url


@pytest.fixture
def alpha(tmp_path: Path, _letta_home_template: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[LettabotHost]:
    monkeypatch.setenv("LETTA_APP_SERVER_URL", "")
    monkeypatch.setenv("LETTA_APP_SERVER_TOKEN", "")
    home = tmp_path / "host-alpha"
    shutil.copytree(_letta_home_template, home, symlinks=True)
    (tmp_path / "alpha-run").mkdir()
    host = LettabotHost(home, TOKEN, tmp_path / "alpha-run", workspaces=tmp_path / "shared")
    host.start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture
async def replicas(letta_home: LettaHome, cluster_db: str, alpha: LettabotHost,
                   tmp_path: Path) -> AsyncIterator[tuple[list[TestChat], list[Posted]]]:
    posts: list[Posted] = []
    async with AsyncExitStack() as stack:
        chats = []
        for n in range(2):
            config = make_config(
                letta_home, tmp_path / f"data-{n}", store={"url": cluster_db},
                letta={"cwd": str(tmp_path / "shared")},  # one volume, the host's too
                hosts=[{"name": "alpha", "url": alpha.url, "token": TOKEN}],
                agents=[{"name": "a", "host": "alpha"}],
                cluster={"enabled": True, "replica": f"r{n}", "heartbeat_seconds": 1,
                         "takeover_seconds": 5})
            bot = await stack.enter_async_context(Bot.open(config, grace=5, prewarm=False))
            chat = TestChat(bot, name="test")
            chat.posts = posts  # one platform
            bot.add_adapter(chat)
            chats.append(chat)
            assert bot.cluster is not None
            with anyio.fail_after(20):
                await bot.cluster.bus.ready.wait()
        yield chats, posts


async def test_jobs_wait_in_the_inbox_while_the_host_is_down(
    replicas: tuple[list[TestChat], list[Posted]], alpha: LettabotHost,
) -> None:
    chats, posts = replicas
    scope = chats[0].scope("C1", "hosted")

    def texts() -> list[str]:
        return [p.text for p in posts if p.scope == scope]

    def done() -> int:  # turns ended in the scope, on any replica
        return sum(c.done_count.get(scope.key, 0) for c in chats)

    def notes() -> list[str]:
        return [n.text for c in chats for n in c.notes if n.scope == scope]

    await chats[0].push("before", scope=scope, message_id="h-0")
    await chats[0].wait_for(lambda: done() >= 1 or None, within=90)
    assert texts() == ["You said: before"]

    alpha.kill()
    await chats[0].push("one", scope=scope, message_id="h-1")
    await chats[1].push("two", scope=scope, message_id="h-2")  # another replica took it
    await chats[0].wait_for(lambda: any(NOTE in n for n in notes()) or None, within=30)
    await anyio.sleep(8)  # retried at least once meanwhile: still waiting, told once
    assert texts() == ["You said: before"]
    assert sum(NOTE in n for n in notes()) == 1

    alpha.start()
    await chats[0].wait_for(lambda: len(texts()) >= 3 or None, within=90)
    await anyio.sleep(2)  # nothing more comes
    assert texts() == ["You said: before", "You said: one", "You said: two"]
    assert not any("stopped; another one is answering" in n for n in notes())
