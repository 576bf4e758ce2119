"""A cluster replica whose store fails as a job starts (the database went away a moment
before; the real CLI, the scripted model, a real PostgreSQL): the turn is retried once the
store answers — never recorded as done without an answer, never answered with an error
it could have waited out. Freezes and outages of whole replicas are tested on processes:
``adapters/slack/tests/test_slack_cluster_faults.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from procrastinate import jobs as pjobs
from sqlalchemy.exc import OperationalError

from lettabot.runtime.adapter import InboundMessage
from lettabot.runtime.bot import Bot
from lettabot.runtime.cluster.inbox import TASK, libpq_url
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.postgres import fresh_database
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import make_config

pytestmark = pytest.mark.anyio

TAKEN_OVER = "another one is answering it now"


@pytest.fixture(scope="module")
def faults_db() -> Iterator[str]:
    with fresh_database("lettabot_store_faults") as url:
        yield url


@pytest.fixture
def bare_db() -> Iterator[str]:
    """A database no replica's worker fetches from (the test plays the workers)."""
    with fresh_database("lettabot_inbox_unit") as url:
        yield url


@pytest.fixture(scope="module")
async def replica(module_home: LettaHome, faults_db: str) -> AsyncIterator[tuple[Bot, TestChat]]:
    config = make_config(module_home, module_home.path / "data-faults",
                         store={"url": faults_db},
                         cluster={"enabled": True, "replica": "s0", "heartbeat_seconds": 1,
                                  "takeover_seconds": 5})
    async with Bot.open(config, grace=5, prewarm=False) as bot:
        chat = TestChat(bot, name="test")
        bot.add_adapter(chat)
        yield bot, chat


def store_fails(bot: Bot, monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """The store's route lookups fail ``times`` times (the database is away), then work."""
    real = bot.store.get_route
    failed: list[int] = []

    async def get_route(key: str) -> Any:
        if len(failed) < times:
            failed.append(1)
            raise OperationalError("SELECT routes", {},
                                   ConnectionRefusedError(111, "Connection refused"))
        return await real(key)

    monkeypatch.setattr(bot.store, "get_route", get_route)
    return failed


async def run_job(bot: Bot, db: str, message: InboundMessage, *, attempts: int,
                  monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Put ``message``'s job in the inbox (as intake does; ``attempts``: as if a replica
    that died had run it), and let it run with the store failing as it starts."""
    assert bot.cluster is not None
    task = bot.cluster.inbox.app.tasks[TASK]
    job_id = await task.configure(lock=message.scope.key, schedule_in={"seconds": 600}) \
        .defer_async(message=message.model_dump_json(),
                     client_message_id=f"test:{message.message_id}")
    failed = store_fails(bot, monkeypatch, times=3)
    conn = await asyncpg.connect(libpq_url(db))
    try:  # due now: the worker fetches it within its polling interval
        await conn.execute("UPDATE procrastinate_jobs SET attempts = $2, scheduled_at = now() "
                           "WHERE id = $1", job_id, attempts)
    finally:
        await conn.close()
    return failed


def inbound(chat: TestChat, thread: str, text: str) -> InboundMessage:
    return InboundMessage(scope=chat.scope("C1", thread), user_id="U1", user_name="U1",
                          text=text, message_id=f"m-{thread}", mentioned=True)


async def test_a_turn_whose_store_fails_as_it_starts_is_answered_once_it_is_back(
    replica: tuple[Bot, TestChat], monkeypatch: pytest.MonkeyPatch, faults_db: str,
) -> None:
    """Not "Sorry — something went wrong (OperationalError)": the job waits for the store."""
    bot, chat = replica
    message = inbound(chat, "store-blip", "through a blip")
    failed = await run_job(bot, faults_db, message, attempts=0, monkeypatch=monkeypatch)
    await chat.wait_for(lambda: chat.texts(message.scope) or None, within=90)
    await anyio.sleep(1)
    assert chat.texts(message.scope) == ["You said: through a blip"]
    assert len(failed) == 3


async def test_a_taken_over_job_whose_store_fails_is_answered_not_dropped(
    replica: tuple[Bot, TestChat], monkeypatch: pytest.MonkeyPatch, faults_db: str,
) -> None:
    """A job another replica left (``attempts > 0``) meets the store away: it still runs,
    the thread told it was taken over, instead of failing without a word."""
    bot, chat = replica
    message = inbound(chat, "store-blip-takeover", "taken over through a blip")
    failed = await run_job(bot, faults_db, message, attempts=1, monkeypatch=monkeypatch)
    await chat.wait_for(lambda: chat.texts(message.scope) or None, within=90)
    await anyio.sleep(1)
    assert chat.texts(message.scope) == ["You said: taken over through a blip"]
    assert len(failed) == 3
    assert any(TAKEN_OVER in n.text for n in chat.notes if n.scope == message.scope)


async def test_only_the_worker_holding_a_job_finishes_it(bare_db: str) -> None:
    """procrastinate finishes a job by its id: a worker whose job was taken over (it was
    frozen) and run by another must not finish (delete) it — that would release its
    scope's lock while the taker runs it."""
    from lettabot.runtime.cluster.inbox import QUEUE, Inbox

    async def never(*args: object) -> None:
        raise AssertionError("no job runs here")

    inbox = Inbox(bare_db, "unit", never, concurrency=1, heartbeat_seconds=1,
                  takeover_seconds=4)
    await inbox.open()
    manager = inbox.app.job_manager
    conn = await asyncpg.connect(libpq_url(bare_db))
    try:
        message = InboundMessage(scope=TestChat(name="unit").scope("C1", "held"),
                                 user_id="U1", text="held", message_id="m-held")
        await inbox.defer(message, "unit:m-held")
        frozen, taker = await manager.register_worker(), await manager.register_worker()
        job = await manager.fetch_job([QUEUE], frozen)
        assert job is not None and job.worker_id == frozen
        await manager.retry_job(job)  # taken over (as the takeover loop does) ...
        again = await manager.fetch_job([QUEUE], taker)  # ... and run by another worker
        assert again is not None and again.id == job.id and again.worker_id == taker
        # the frozen worker wakes and finishes "its" job: nothing happens
        await manager.finish_job(job, pjobs.Status.SUCCEEDED, delete_job=True)
        row = await conn.fetchrow("SELECT status, worker_id FROM procrastinate_jobs "
                                  "WHERE id = $1", job.id)
        assert row is not None and (row["status"], row["worker_id"]) == ("doing", taker)
        await manager.finish_job(again, pjobs.Status.SUCCEEDED, delete_job=True)
        assert await conn.fetchval("SELECT count(*) FROM procrastinate_jobs "
                                   "WHERE id = $1", job.id) == 0
    finally:
        await conn.close()
        await inbox.close()


async def test_a_job_is_taken_over_once_and_only_from_a_silent_worker(bare_db: str) -> None:
    """The takeover moves a job only while its worker's heartbeat is stale (a worker that
    woke and sent one keeps it), once; a lease asks the database whose the job is."""
    from lettabot.runtime.cluster.inbox import QUEUE, Inbox

    async def never(*args: object) -> None:
        raise AssertionError("no job runs here")

    inbox = Inbox(bare_db, "unit2", never, concurrency=1, heartbeat_seconds=1,
                  takeover_seconds=4)
    await inbox.open()
    manager = inbox.manager
    conn = await asyncpg.connect(libpq_url(bare_db))
    try:
        message = InboundMessage(scope=TestChat(name="unit").scope("C1", "silent"),
                                 user_id="U1", text="silent", message_id="m-silent")
        await inbox.defer(message, "unit:m-silent")
        frozen, taker = await manager.register_worker(), await manager.register_worker()
        job = await manager.fetch_job([QUEUE], frozen)
        assert job is not None
        assert not await manager.take_over(job, 4)  # its heartbeat is fresh
        await conn.execute("UPDATE procrastinate_workers SET last_heartbeat = "
                           "now() - interval '1 minute' WHERE id = $1", frozen)
        assert await manager.take_over(job, 4)
        assert not await manager.take_over(job, 4)  # once
        again = await manager.fetch_job([QUEUE], taker)
        assert again is not None and again.id == job.id
        assert await inbox.holds(job.id, taker, again.attempts)
        assert not await inbox.holds(job.id, frozen, job.attempts)
        await manager.finish_job(again, pjobs.Status.SUCCEEDED, delete_job=True)
    finally:
        await conn.close()
        await inbox.close()


async def test_a_dead_owners_jobs_go_back_to_the_shared_queue(bare_db: str) -> None:
    """A scope's jobs go to its owner's own queue while the owner's heartbeat is fresh;
    once it is not, new ones go to the shared queue, waiting ones are moved there, and a
    job it was running is taken over into the shared queue (any worker runs them). Only
    the worker holding a scope's job claims the scope; the epoch changes with the owner."""
    from lettabot.runtime.cluster.inbox import QUEUE, Inbox, Lease, worker_queue

    async def never(*args: object) -> None:
        raise AssertionError("no job runs here")

    inbox = Inbox(bare_db, "unit3", never, concurrency=1, heartbeat_seconds=1,
                  takeover_seconds=4)
    await inbox.open()
    manager = inbox.manager
    conn = await asyncpg.connect(libpq_url(bare_db))
    scope = TestChat(name="unit").scope("C1", "owned")

    def message(n: int) -> InboundMessage:
        return InboundMessage(scope=scope, user_id="U1", text=f"m{n}", message_id=f"m{n}")

    async def queue_of(job_id: int) -> str:
        return str(await conn.fetchval("SELECT queue_name FROM procrastinate_jobs "
                                       "WHERE id = $1", job_id))

    try:
        owner, other = await manager.register_worker(), await manager.register_worker()
        first = await inbox.defer(message(0), "unit:m0")
        assert await queue_of(first) == QUEUE  # nobody owns the scope yet
        job = await manager.fetch_job([QUEUE, worker_queue(owner)], owner)
        assert job is not None and job.id == first
        lease = Lease(inbox, first, owner, job.attempts, 0.0)
        assert await inbox.claim(scope.key, Lease(inbox, first, other, 0, 0.0)) is None
        epoch = await inbox.claim(scope.key, lease)
        assert epoch is not None and await inbox.claim(scope.key, lease) == epoch
        second = await inbox.defer(message(1), "unit:m1")
        assert await queue_of(second) == worker_queue(owner)
        # the owner stops sending heartbeats, its first job still running
        await conn.execute("UPDATE procrastinate_workers SET last_heartbeat = "
                           "now() - interval '1 minute' WHERE id = $1", owner)
        third = await inbox.defer(message(2), "unit:m2")
        assert await queue_of(third) == QUEUE
        assert await manager.move_stranded(inbox.affine_seconds) == 1
        assert await queue_of(second) == QUEUE
        assert await manager.take_over(job, 4)
        assert await queue_of(first) == QUEUE
        again = await manager.fetch_job([QUEUE, worker_queue(other)], other)
        assert again is not None and again.id == first  # the lock keeps the order
        taken = Lease(inbox, first, other, again.attempts, 0.0)
        moved = await inbox.claim(scope.key, taken)
        assert moved is not None and moved != epoch
        await manager.finish_job(again, pjobs.Status.SUCCEEDED, delete_job=True)
    finally:
        await conn.close()
        await inbox.close()
