"""Two bots (replicas) on one PostgreSQL store, each with its own process state, serving
one person at once: their turns are summed in the database, so both refuse once the
person's budget is used up (the real CLI on one shared App Server, as in test_cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from functools import partial

import anyio
import pytest

from lettabot.runtime.bot import Bot
from lettabot.testing.app_server import external_app_server
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.postgres import fresh_database
from lettabot.testing.scripted_model import ScriptedModelServer
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import make_config
from tests.runtime.test_budgets import SPEND, refusal, spend

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def replicas_db() -> Iterator[str]:
    with fresh_database("lettabot_budget_replicas") as url:
        yield url


@pytest.mark.slow
async def test_two_replicas_on_one_store_count_one_budget(
    module_home: LettaHome, replicas_db: str, scripted_model: ScriptedModelServer,
) -> None:
    scripted_model.on(SPEND, spend)
    async with AsyncExitStack() as stack:
        server = stack.enter_context(external_app_server("budget-token", module_home.workdir))
        chats = []
        for n in range(2):  # one after the other: the first creates the agent, both share it
            config = make_config(
                module_home, module_home.path / f"data-{n}", store={"url": replicas_db},
                servers={"count": 0, "urls": [{"url": server.url, "token": "budget-token"}]},
                budgets={"person_tokens": 1000})
            bot = await stack.enter_async_context(Bot.open(config, grace=5, prewarm=False))
            chat = TestChat(bot, name="twin")
            bot.add_adapter(chat)
            chats.append(chat)
        one, two = chats
        here, there = one.scope("C1", "on-one"), two.scope("C2", "on-two")
        async with anyio.create_task_group() as tg:  # the same person, on both at once
            tg.start_soon(partial(one.push, "spend 600", scope=here, user="U1"))
            tg.start_soon(partial(two.push, "spend 500", scope=there, user="U1"))
        await one.wait_done(here)
        await two.wait_done(there)
        assert one.texts(here) == ["spent 600"] and two.texts(there) == ["spent 500"]
        await one.push("after, on one", scope=here, user="U1")
        await one.wait_for(lambda: refusal(one, "1,100 of 1,000 tokens"))
        await two.push("after, on two", scope=there, user="U1")
        await two.wait_for(lambda: refusal(two, "1,100 of 1,000 tokens"))
        usage = await two.command("usage", scope=there, user="U1")
        assert "• You: 1,100 tokens of 1,000" in usage.text
        assert not any("after, on" in r.user_text for r in scripted_model.requests)
