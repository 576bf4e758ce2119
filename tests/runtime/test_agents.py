"""Several agents behind one bot: routing rules, each agent's approvers, routes that keep
their agent when the rules change (real CLI + scripted model)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from lettabot.runtime.bot import Bot
from lettabot.runtime.store import Store
from lettabot.testing.chat import TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import ChatRequest, Reply, ScriptedModelServer
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import make_config

pytestmark = pytest.mark.anyio


def _who(request: ChatRequest) -> Reply:
    found = re.search(r"I am the (\w+) agent", request.system)
    return Reply.say(f"I am {found.group(1) if found else 'nobody in particular'}.")


@pytest.fixture(autouse=True)
def who_am_i(scripted_model: ScriptedModelServer) -> None:
    scripted_model.on("who are you", _who)


def _agents(ops_channel: str, *, with_ops: bool = True) -> list[dict[str, Any]]:
    agents: list[dict[str, Any]] = [
        {"name": "default", "default": True, "persona": "I am the support agent"},
    ]
    if with_ops:
        agents.append({
            "name": "ops", "persona": "I am the ops agent", "approvers": ["test:UBOSS"],
            "routes": [{"adapter": "test", "channel": ops_channel}],
        })
    return agents


def _bot(home: LettaHome, store: Store, data: Path, agents: list[dict[str, Any]]) -> Any:
    config = make_config(home, data, agents=agents)
    return Bot.open(config, store=store, grace=5)


async def test_each_channel_gets_its_agent_with_its_own_approvers(
    module_home: LettaHome, module_store: Store, tmp_path: Path,
) -> None:
    async with _bot(module_home, module_store, tmp_path, _agents("COPS")) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        ops, support, dm = chat.scope("COPS", "t1"), chat.scope("CHELP", "t1"), chat.scope(
            "D1", dm=True)
        for scope in (ops, support, dm):
            await chat.push("who are you", scope=scope)
        for scope in (ops, support, dm):
            await chat.wait_done(scope)
        assert chat.texts(ops) == ["I am ops."]
        assert chat.texts(support) == ["I am support."] and chat.texts(dm) == ["I am support."]
        routes = {s: await bot.store.get_route(s.key) for s in (ops, support)}
        assert routes[ops] and routes[support]
        assert routes[ops].agent_id != routes[support].agent_id

        # ops has its own approvers: the asker may not approve there, the ops approver may
        await chat.push("run: echo ops-ran", scope=ops, user="U1")
        prompt = await chat.wait_prompt(ops)
        refused = await chat.click(prompt.request_id, "approve", user="U1")
        assert refused.status == "not_authorized"
        assert (await chat.click(prompt.request_id, "approve", user="UBOSS")).status == "decided"
        await chat.wait_done(ops, 2)
        assert "ops-ran" in chat.texts(ops)[-1]

        # in support (no approvers of its own, self-approval on) the asker approves
        await chat.push("run: echo help-ran", scope=support, user="U1")
        prompt = await chat.wait_prompt(support)
        assert (await chat.click(prompt.request_id, "approve", user="U1")).status == "decided"
        await chat.wait_done(support, 2)
        assert "help-ran" in chat.texts(support)[-1]

        status = await chat.command("status", scope=ops)
        assert "(ops)" in status.text


async def test_a_conversation_keeps_its_agent_when_the_rules_change(
    module_home: LettaHome, module_store: Store, tmp_path: Path,
) -> None:
    thread = TestChat().scope("CRULES", "kept")
    async with _bot(module_home, module_store, tmp_path, _agents("CRULES")) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        await chat.push("who are you", scope=thread)
        await chat.wait_done(thread)
        assert chat.texts(thread) == ["I am ops."]

    # the ops rule now names another channel: the old thread stays with ops, a new one
    # in the same channel goes to the default agent
    async with _bot(module_home, module_store, tmp_path, _agents("CELSEWHERE")) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        fresh = chat.scope("CRULES", "fresh")
        await chat.push("who are you", scope=thread)
        await chat.push("who are you", scope=fresh)
        await chat.wait_done(thread)
        await chat.wait_done(fresh)
        assert chat.texts(thread) == ["I am ops."]
        assert chat.texts(fresh) == ["I am support."]

    # ops is gone from the config: its thread is told, not run by another agent
    async with _bot(module_home, module_store, tmp_path,
                    _agents("CRULES", with_ops=False)) as bot:
        chat = TestChat(bot)
        bot.add_adapter(chat)
        await chat.push("who are you", scope=thread)
        await chat.wait_done(thread)
        [reply] = chat.texts(thread)
        assert "which the config no longer names" in reply and "`reset`" in reply
        await chat.command("reset", scope=thread)
        await chat.push("who are you", scope=thread)
        await chat.wait_done(thread, 2)
        assert chat.texts(thread)[-1] == "I am support."
