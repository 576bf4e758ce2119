"""The turns' ``client_message_id``: the Letta backend makes a retried input idempotent
by it (and a self-hosted Letta server replays a run when one repeats, whichever agent it
was for), so it is unique across deployments, agents, scopes and messages, and the same
for the same message delivered again. The real CLI's App Server and the scripted model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lettabot.runtime.adapter import InboundMessage
from lettabot.runtime.bot import Bot
from lettabot.runtime.intake import DEPLOYMENT_SETTING, client_message_id
from lettabot.runtime.jobs import Job
from lettabot.runtime.store import Schedule, open_store
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import make_config

pytestmark = pytest.mark.anyio


def record_ids(bot: Bot) -> list[str]:
    """The ``client_message_id`` of every job the bot queues for a turn (its turns run)."""
    ids: list[str] = []
    enqueue = bot.scheduler.enqueue

    def recording(job: Job) -> Any:
        ids.append(job.client_message_id)
        return enqueue(job)

    bot.scheduler.enqueue = recording  # type: ignore[method-assign]
    return ids


class Deployments:
    """Bots opened on stores of their own (deployments) or on one's store (replicas of it,
    or the same bot restarted), all on the module's Letta home and one agent."""

    def __init__(self, home: LettaHome, stack: AsyncExitStack) -> None:
        self.home = home
        self.stack = stack
        self.agent_id: str | None = None

    async def open(self, name: str) -> tuple[Bot, TestChat, list[str]]:
        data = self.home.path / f"deployment-{name}"
        letta = {"agent_id": self.agent_id} if self.agent_id else {}
        config = make_config(self.home, data, letta=letta)
        data.mkdir(parents=True, exist_ok=True)
        store = await self.stack.enter_async_context(open_store(config.store_url))
        bot = await self.stack.enter_async_context(
            Bot.open(config, store=store, grace=5, prewarm=False))
        chat = TestChat(bot, name="test")
        bot.add_adapter(chat)
        self.agent_id = self.agent_id or bot.agents.default.agent_id
        return bot, chat, record_ids(bot)


@pytest.fixture
async def deployments(module_home: LettaHome) -> AsyncIterator[Deployments]:
    async with AsyncExitStack() as stack:
        yield Deployments(module_home, stack)


async def test_two_deployments_on_one_home_send_different_ids_for_the_same_message(
    deployments: Deployments,
) -> None:
    one, chat_one, ids_one = await deployments.open("one")
    two, chat_two, ids_two = await deployments.open("two")
    assert one.agents.default.agent_id == two.agents.default.agent_id  # the same agent
    scope = chat_one.scope("C1", "same-thread")  # the same workspace, channel, thread ids
    await chat_one.push("from one", scope=scope, message_id="M-1", event_id="Ev-1")
    await chat_one.wait_done(scope)
    await chat_two.push("from two", scope=scope, message_id="M-1", event_id="Ev-1")
    await chat_two.wait_done(scope)
    # each deployment's own message answered: nothing replayed from the other's run
    assert chat_one.texts(scope) == ["You said: from one"]
    assert chat_two.texts(scope) == ["You said: from two"]
    assert len(ids_one) == len(ids_two) == 1
    assert ids_one[0] != ids_two[0]
    deployment_ids = {await bot.store.get_setting(DEPLOYMENT_SETTING) for bot in (one, two)}
    assert len(deployment_ids) == 2 and None not in deployment_ids


async def test_a_redelivered_message_keeps_its_id_after_a_restart(
    deployments: Deployments,
) -> None:
    bot, chat, _ = await deployments.open("restart")
    scope = chat.scope("C1", "redeliver")
    submitted: list[str] = []

    async def crash(message: InboundMessage, client_message_id: str) -> None:
        submitted.append(client_message_id)
        raise RuntimeError("lettabot died while queueing it")

    bot.intake._submit = crash
    with pytest.raises(RuntimeError):
        await chat.push("keep my id", scope=scope, event_id="Ev-r")
    # the platform retries the unanswered event; lettabot was restarted on the same store
    # (or another replica of the deployment takes the retry)
    again = await deployments.stack.enter_async_context(
        Bot.open(bot.config, store=bot.store, grace=5, prewarm=False))
    chat_again = TestChat(again, name="test")
    again.add_adapter(chat_again)
    ids = record_ids(again)
    await chat_again.push("keep my id", scope=scope, event_id="Ev-r")
    await chat_again.wait_done(scope)
    assert chat_again.texts(scope) == ["You said: keep my id"]
    assert ids == submitted  # the backend sees the same input again, not a new one


async def test_a_scheduled_run_has_an_id_per_due_time(deployments: Deployments) -> None:
    bot, chat, ids = await deployments.open("schedules")
    scope = chat.scope("C1", "scheduled")
    schedule = Schedule(id="s-1", scope=scope.key, prompt="scheduled hello",
                        created_by="test:U1", next_run=datetime.now(UTC),
                        created_at=datetime.now(UTC))
    due = datetime(2030, 1, 1, 9, tzinfo=UTC)
    await bot.intake.scheduled(schedule, due)
    await chat.wait_done(scope)
    await bot.intake.scheduled(schedule, due + timedelta(days=1))
    await chat.wait_done(scope, 2)
    assert chat.texts(scope) == ["You said: scheduled hello"] * 2
    assert len(set(ids)) == 2
    deployment = await bot.store.get_setting(DEPLOYMENT_SETTING)
    assert deployment is not None
    assert ids[0] == client_message_id(deployment, "default", scope,
                                       f"schedule:s-1:{due.isoformat()}")


def test_ids_differ_by_each_part_and_stay_short() -> None:
    from lettabot.runtime.adapter import Scope

    scope = Scope(adapter="slack", workspace="T1", channel="C1", thread="1.2")
    base = client_message_id("dep-a", "default", scope, "Ev-1")
    assert base == client_message_id("dep-a", "default", scope, "Ev-1")  # stable
    others = {
        client_message_id("dep-b", "default", scope, "Ev-1"),
        client_message_id("dep-a", "ops", scope, "Ev-1"),
        client_message_id("dep-a", "default", scope.model_copy(update={"workspace": "T2"}),
                          "Ev-1"),
        client_message_id("dep-a", "default", scope, "Ev-2"),
    }
    assert base not in others and len(others) == 4
    assert base.startswith("slack:") and len(base) <= 64
    long = client_message_id("d" * 100, "a" * 100, scope.model_copy(
        update={"adapter": "x" * 80}), "m" * 500)
    assert len(long) <= 64
    assert all(c.isalnum() or c in ":-_" for c in long)

