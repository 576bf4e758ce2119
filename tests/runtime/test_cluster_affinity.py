"""Scope affinity in a cluster (three replicas in one process, the real CLI, the scripted
model, a real PostgreSQL): a thread's follow-ups run on the replica that holds its
session, which stays open between turns (``lettabot_sessions_opened`` counts every
session a replica opens); a scope that ran elsewhere meanwhile is reopened, not continued
from a stale session; a replica that stops answering leaves its threads to the others."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from lettabot.runtime.adapter import InboundMessage, Scope
from lettabot.runtime.bot import Bot
from lettabot.runtime.cluster.inbox import worker_queue
from lettabot.testing.app_server import external_app_server
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.postgres import fresh_database
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import make_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@dataclass
class Cluster:
    bots: list[Bot]
    chats: list[TestChat]

    def texts(self, scope: Scope) -> list[str]:
        return self.chats[0].texts(scope)

    def turns(self) -> list[int]:
        """Turns each replica ran so far."""
        return [bot.scheduler.turns_run for bot in self.bots]

    def opened(self, n: int) -> float:
        """Sessions replica ``n`` opened so far (resumed or new)."""
        registry = self.bots[n].metrics.registry
        return sum(registry.get_sample_value("lettabot_sessions_opened_total",
                                             {"how": how}) or 0.0
                   for how in ("resumed", "new"))

    def moved(self) -> int:
        """Jobs the replicas moved out of a silent worker's own queue."""
        return sum(b.cluster.inbox.moved for b in self.bots if b.cluster is not None)

    async def answered(self, scope: Scope, count: int) -> None:
        await self.chats[0].wait_for(lambda: len(self.texts(scope)) >= count or None,
                                     within=90)

    async def ran_on(self, before: list[int], count: int = 1) -> int:
        """The one replica that ran the ``count`` turns since ``before``."""
        await self.chats[0].wait_for(
            lambda: sum(self.turns()) - sum(before) >= count or None, within=30)
        [n] = [i for i, (a, b) in enumerate(zip(before, self.turns(), strict=True)) if b > a]
        return n


@pytest.fixture(scope="module")
def affinity_db() -> Iterator[str]:
    with fresh_database("lettabot_affinity") as url:
        yield url


@pytest.fixture(scope="module")
async def cluster(module_home: LettaHome, affinity_db: str) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        server = stack.enter_context(external_app_server("affinity-token", module_home.workdir))
        bots: list[Bot] = []
        chats: list[TestChat] = []
        for n in range(3):
            config = make_config(module_home, module_home.path / f"data-aff-{n}",
                                 store={"url": affinity_db},
                                 servers={"count": 0, "urls": [{"url": server.url,
                                                                "token": "affinity-token"}]},
                                 cluster={"enabled": True, "replica": f"a{n}",
                                          "heartbeat_seconds": 1, "takeover_seconds": 5})
            bot = await stack.enter_async_context(Bot.open(config, grace=5, prewarm=False))
            chat = TestChat(bot, name="test")
            if chats:
                chat.posts = chats[0].posts  # one platform: replicas post into one place
                chat._ids = itertools.count(1_000_000 * n)  # whose ids do not collide
            bot.add_adapter(chat)
            bots.append(bot)
            chats.append(chat)
        for bot in bots:
            assert bot.cluster is not None
            with anyio.fail_after(20):
                await bot.cluster.bus.ready.wait()
        await chats[0].wait_for(  # every worker registered (has its own queue)
            lambda: all(b.cluster is not None and b.cluster.inbox.worker is not None
                        and b.cluster.inbox.worker.worker_id is not None for b in bots)
            or None, within=20)
        yield Cluster(bots, chats)


def own_queue(bot: Bot) -> str:
    assert bot.cluster is not None and bot.cluster.inbox.worker is not None
    worker_id = bot.cluster.inbox.worker.worker_id
    assert worker_id is not None
    return worker_queue(worker_id)


async def defer_into(bot: Bot, queue: str, scope: Scope, text: str) -> None:
    """Put a message in the inbox, in ``queue`` (as intake does, with the routing decided:
    the queue of the replica that owned the scope when it arrived)."""
    assert bot.cluster is not None
    message = InboundMessage(scope=scope, user_id="U1", user_name="U1", text=text,
                             message_id=f"m-{text}", mentioned=True)
    await bot.cluster.inbox.defer(message, f"test:{text}", queue=queue)


async def test_follow_ups_run_warm_on_the_replica_that_ran_the_first_message(
    cluster: Cluster,
) -> None:
    """Delivered to every replica in turn, a thread's messages all run on one replica,
    in one session: opened for the first, kept open for the follow-ups."""
    scope = cluster.chats[0].scope("C1", "warm")
    turns = cluster.turns()
    opened = [cluster.opened(n) for n in range(3)]
    for m in range(4):
        await cluster.chats[m % 3].push(f"warm {m}", scope=scope, message_id=f"warm-{m}")
        await cluster.answered(scope, m + 1)
    assert cluster.texts(scope) == [f"You said: warm {m}" for m in range(4)]
    owner = await cluster.ran_on(turns, 4)
    assert cluster.turns()[owner] - turns[owner] == 4
    assert [cluster.opened(n) - opened[n] for n in range(3)] == \
        [1.0 if n == owner else 0.0 for n in range(3)]


async def test_a_scope_that_ran_elsewhere_and_came_back_is_reopened(cluster: Cluster) -> None:
    """The owner keeps its session open; the thread's next message runs on another
    replica (it landed in that one's queue); when the thread comes back, the first replica
    does not go on in the session it kept (stale), it opens the conversation again — and
    keeps that one for the next message."""
    scope = cluster.chats[0].scope("C1", "moved")
    turns = cluster.turns()
    await cluster.chats[0].push("moved 0", scope=scope, message_id="moved-0")
    await cluster.answered(scope, 1)
    a = await cluster.ran_on(turns)
    b = (a + 1) % 3
    bot_a, bot_b = cluster.bots[a], cluster.bots[b]
    assert bot_a.conversations.get(scope) is not None  # kept open between turns

    turns, opened_a, opened_b = cluster.turns(), cluster.opened(a), cluster.opened(b)
    await defer_into(bot_a, own_queue(bot_b), scope, "moved 1")
    await cluster.answered(scope, 2)
    assert await cluster.ran_on(turns) == b and cluster.opened(b) == opened_b + 1

    turns = cluster.turns()
    await defer_into(bot_b, own_queue(bot_a), scope, "moved 2")
    await cluster.answered(scope, 3)
    assert await cluster.ran_on(turns) == a
    assert cluster.opened(a) == opened_a + 1  # reopened, not the stale session

    turns = cluster.turns()
    await cluster.chats[b].push("moved 3", scope=scope, message_id="moved-3")
    await cluster.answered(scope, 4)
    assert await cluster.ran_on(turns) == a and cluster.opened(a) == opened_a + 1  # warm again
    assert cluster.texts(scope) == [f"You said: moved {m}" for m in range(4)]


async def test_a_thread_whose_replica_stopped_answering_is_answered_by_another(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The owner hangs (no heartbeat, fetches nothing) right as the follow-up arrives,
    which therefore waits in the owner's queue: once the owner's heartbeat is stale, the
    follow-up moves to the shared queue and another replica answers it, in order.
    Runs last: the hung replica registers anew afterwards."""
    scope = cluster.chats[0].scope("C1", "owner-hangs")
    turns = cluster.turns()
    await cluster.chats[0].push("hang 0", scope=scope, message_id="hang-0")
    await cluster.answered(scope, 1)
    owner = await cluster.ran_on(turns)
    inbox = cluster.bots[owner].cluster.inbox  # type: ignore[union-attr]
    moved = cluster.moved()

    async def silent(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(inbox.manager, "update_heartbeat", silent)
    monkeypatch.setattr(inbox.manager, "fetch_job", silent)
    assert await inbox.queue_for(scope.key) == own_queue(cluster.bots[owner])
    turns = cluster.turns()
    await cluster.chats[owner].push("hang 1", scope=scope, message_id="hang-1")
    await cluster.answered(scope, 2)
    assert await cluster.ran_on(turns) != owner
    assert cluster.moved() > moved  # it waited in the owner's queue, then moved
    assert cluster.texts(scope) == ["You said: hang 0", "You said: hang 1"]
