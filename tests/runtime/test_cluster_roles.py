"""``[cluster] roles``: a replica without ``worker`` (ingress only) receives, checks,
dedupes and queues messages and scheduled runs, and never opens a conversation — its
messages are answered by a worker replica. The real CLI, the scripted model, a real
PostgreSQL; one App Server both replicas share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from lettabot import sdk
from lettabot.runtime.adapter import InboundMessage
from lettabot.runtime.bot import Bot
from lettabot.runtime.jobs import Job
from lettabot.runtime.store import Schedule
from lettabot.testing.app_server import external_app_server
from lettabot.testing.chat import Posted, TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.postgres import fresh_database
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import make_config

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def roles_db() -> Iterator[str]:
    with fresh_database("lettabot_roles") as url:
        yield url


@dataclass
class Replicas:
    ingress: Bot
    worker: Bot
    chat: TestChat
    """The ingress replica's chat: where the platform delivers."""
    posts: list[Posted]
    opened: list[tuple[sdk.LettaClient, str]]
    """Every session opened (create or resume), by client."""

    def opened_by(self, bot: Bot) -> list[str]:
        return [what for client, what in self.opened if client is bot.client]


@pytest.fixture(scope="module")
async def replicas(module_home: LettaHome, roles_db: str) -> AsyncIterator[Replicas]:
    opened: list[tuple[sdk.LettaClient, str]] = []
    create, resume = sdk.LettaClient.create_session, sdk.LettaClient.resume_session

    def creating(self: sdk.LettaClient, *args: Any, **kwargs: Any) -> sdk.Session:
        opened.append((self, "create"))
        return create(self, *args, **kwargs)

    def resuming(self: sdk.LettaClient, *args: Any, **kwargs: Any) -> sdk.Session:
        opened.append((self, "resume"))
        return resume(self, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(sdk.LettaClient, "create_session", creating)
    mp.setattr(sdk.LettaClient, "resume_session", resuming)
    posts: list[Posted] = []
    try:
        async with AsyncExitStack() as stack:
            server = stack.enter_context(external_app_server("roles-token", module_home.workdir))
            bots, chats = [], []
            for n, roles in enumerate((["worker"], ["ingress"])):  # the worker makes the agent
                config = make_config(module_home, module_home.path / f"roles-{n}",
                                     store={"url": roles_db},
                                     servers={"count": 0, "urls": [{"url": server.url,
                                                                    "token": "roles-token"}]},
                                     cluster={"enabled": True, "replica": f"{roles[0]}-{n}",
                                              "roles": roles, "heartbeat_seconds": 1,
                                              "takeover_seconds": 5})
                bot = await stack.enter_async_context(Bot.open(config, grace=5))  # prewarms
                chat = TestChat(bot, name="test")
                chat.posts = posts  # one platform: both replicas post into the same threads
                bot.add_adapter(chat)
                bots.append(bot)
                chats.append(chat)
            for bot in bots:
                assert bot.cluster is not None
                with anyio.fail_after(20):
                    await bot.cluster.bus.ready.wait()
            yield Replicas(ingress=bots[1], worker=bots[0], chat=chats[1], posts=posts,
                           opened=opened)
    finally:
        mp.undo()


def record_submitted(bot: Bot) -> list[str]:
    """The ``client_message_id`` of every message ``bot``'s intake puts in the inbox."""
    ids: list[str] = []
    submit = bot.intake._submit

    async def recording(message: InboundMessage, client_message_id: str) -> None:
        ids.append(client_message_id)
        await submit(message, client_message_id)

    bot.intake._submit = recording
    return ids


def record_run(bot: Bot) -> list[str]:
    """The ``client_message_id`` of every job ``bot``'s worker queues for a turn."""
    ids: list[str] = []
    enqueue = bot.scheduler.enqueue

    def recording(job: Job) -> int:
        ids.append(job.client_message_id)
        return enqueue(job)

    bot.scheduler.enqueue = recording  # type: ignore[method-assign]
    return ids


def texts(replicas: Replicas, key: str) -> list[str]:
    return [p.text for p in replicas.posts if p.scope.key == key]


async def test_an_ingress_only_replica_queues_messages_and_runs_no_turn(
    replicas: Replicas,
) -> None:
    scopes = [replicas.chat.scope("C1", f"ingress-{i}") for i in range(3)]
    submitted, run = record_submitted(replicas.ingress), record_run(replicas.worker)
    for round_ in range(2):
        for i, scope in enumerate(scopes):
            await replicas.chat.push(f"m{round_}-s{i}", scope=scope)

    def answered() -> bool | None:
        return all(len(texts(replicas, s.key)) >= 2 for s in scopes) or None

    await replicas.chat.wait_for(answered, within=120)
    for i, scope in enumerate(scopes):
        assert texts(replicas, scope.key) == [f"You said: m0-s{i}", f"You said: m1-s{i}"]
    assert replicas.opened_by(replicas.worker)  # the worker ran them
    assert replicas.opened_by(replicas.ingress) == []  # no conversation, no prewarm
    assert not replicas.ingress.scheduler.lanes
    # each turn's client_message_id is the one intake gave it: it travels with the durable
    # job (a takeover runs the same job again, so the same id)
    assert len(submitted) == 6 and sorted(run) == sorted(submitted)


async def test_a_scheduled_run_claimed_by_an_ingress_replica_runs_on_a_worker(
    replicas: Replicas,
) -> None:
    scope = replicas.chat.scope("C1", "ingress-schedule")
    now = datetime.now(UTC)
    await replicas.ingress.store.add_schedule(Schedule(
        id="ingress-s1", scope=scope.key, prompt="scheduled on ingress",
        created_by="test:U1", next_run=now, created_at=now))
    replicas.ingress.schedules.wake()  # the ingress replica looks first and claims it
    await replicas.chat.wait_for(lambda: texts(replicas, scope.key) or None, within=60)
    assert texts(replicas, scope.key) == ["You said: scheduled on ingress"]
    schedule = await replicas.ingress.store.get_schedule("ingress-s1")
    assert schedule is not None and schedule.runs == 1
    assert replicas.opened_by(replicas.ingress) == []
    assert not replicas.ingress.scheduler.lanes
