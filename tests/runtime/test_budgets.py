"""Budgets end to end: the real CLI, the scripted model (which reports the tokens a test
chooses), the test chat. A turn past a budget is refused before the model is asked."""

from __future__ import annotations

import re

import pytest

from lettabot.runtime.bot import Bot
from lettabot.runtime.store import Schedule, Store, utcnow
from lettabot.testing.chat import Note, TestChat
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import ChatRequest, Reply, ScriptedModelServer
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import BotMaker, make_config

pytestmark = pytest.mark.anyio

SPEND = re.compile(r"spend (\d+)")


def spend(request: ChatRequest) -> Reply:
    """``spend N``: an answer whose usage is N tokens (N - 10 in, 10 out)."""
    m = SPEND.search(request.user_text)
    assert m is not None
    n = int(m.group(1))
    return Reply.say(f"spent {n}", tokens=(n - 10, 10))


@pytest.fixture
def spending(scripted_model: ScriptedModelServer) -> ScriptedModelServer:
    scripted_model.on(SPEND, spend)
    return scripted_model


def refusal(chat: TestChat, *needles: str) -> Note | None:
    return next((n for n in chat.notes if "Not answered" in n.text
                 and all(x in n.text for x in needles)), None)


def asked(model: ScriptedModelServer, text: str) -> bool:
    return any(text in r.user_text for r in model.requests)


async def bot_used(store: Store, bot: Bot) -> int:
    return (await bot.budgets.used("bot", bot.budgets.today())).tokens


async def test_a_person_over_budget_is_refused_before_the_turn_starts(
    make_bot: BotMaker, spending: ScriptedModelServer,
) -> None:
    bot, chat = await make_bot("person", budgets={"person_tokens": 1000})
    scope = chat.scope("C1", "person")
    await chat.push("spend 1000", scope=scope, user="U1")
    await chat.wait_done(scope)
    await chat.push("are you still there", scope=scope, user="U1")
    note = await chat.wait_for(lambda: refusal(chat, "your daily budget"))
    assert "1,000 of 1,000 tokens today (person budget)" in note.text
    assert re.search(r"resets at \d{4}-\d\d-\d\d 00:00 UTC \(in \d+", note.text)
    assert note.user_id == "U1" and note.scope == scope
    await chat.push("hello from someone else", scope=scope, user="U2")
    await chat.wait_done(scope, 2)
    assert chat.texts(scope) == ["spent 1000", "You said: hello from someone else"]
    assert not asked(spending, "are you still there")  # the model never saw it
    usage = await chat.command("usage", scope=scope, user="U1")
    assert "• You: 1,000 tokens of 1,000" in usage.text
    status = await chat.command("status", scope=scope, user="U1")
    assert "Budgets today (tokens): you 1,000/1,000; here 1,1" in status.text
    metrics = bot.metrics.render().decode()
    assert 'lettabot_budget_refusals_total{budget="person"} 1.0' in metrics
    assert 'lettabot_tokens_total{kind="input"}' in metrics


async def test_scope_and_bot_budgets(
    make_bot: BotMaker, spending: ScriptedModelServer, module_store: Store,
) -> None:
    bot, chat = await make_bot("shared", budgets={"scope_tokens": 500})
    before = await bot_used(module_store, bot)
    here, there = chat.scope("C1", "scope-a"), chat.scope("C2", "scope-b")
    await chat.push("spend 500", scope=here, user="U1")
    await chat.wait_done(here)
    await chat.push("my turn now", scope=here, user="U2")
    note = await chat.wait_for(lambda: refusal(chat, "this conversation"))
    assert "500 of 500 tokens today (scope budget)" in note.text
    await chat.push("spend 300", scope=there, user="U2")  # another scope is not limited
    await chat.wait_done(there)
    assert chat.texts(there) == ["spent 300"] and not asked(spending, "my turn now")
    # the whole bot: every scope's and person's turns together
    capped, chat2 = await make_bot("capped", budgets={"bot_tokens": before + 1000})
    elsewhere = chat2.scope("C3", "bot")
    await chat2.push("spend 200", scope=elsewhere, user="U3")
    await chat2.wait_done(elsewhere)
    await chat2.push("one more", scope=elsewhere, user="U4")
    note = await chat2.wait_for(lambda: refusal(chat2, "the bot's daily budget"))
    assert f"{before + 1000:,} of {before + 1000:,} tokens today (bot budget)" in note.text
    assert not asked(spending, "one more")
    metrics = capped.metrics.render().decode()
    assert 'lettabot_budget_refusals_total{budget="bot"} 1.0' in metrics
    assert f'lettabot_budget_bot_used{{unit="tokens"}} {float(before + 1000)}' in metrics
    assert f'lettabot_budget_bot_limit{{unit="tokens"}} {float(before + 1000)}' in metrics


async def test_an_approver_lifts_a_scope_budget_and_nobody_else_can(
    make_bot: BotMaker, spending: ScriptedModelServer,
) -> None:
    _, chat = await make_bot("lift", budgets={"scope_tokens": 500},
                             access={"approvers": ["lift:BOSS"]})
    scope = chat.scope("C1", "lift")
    await chat.push("spend 500", scope=scope, user="U1")
    await chat.wait_done(scope)
    await chat.push("refused one", scope=scope, user="U1")
    await chat.wait_for(lambda: refusal(chat, "500 of 500 tokens"))
    denied = await chat.command("budget", scope=scope, user="U1", args="lift")
    assert denied.text == "Only the configured approvers can lift budgets."
    raised = await chat.command("budget", scope=scope, user="BOSS", args="lift 300")
    assert "300 tokens more" in raised.text and "lift:BOSS" in raised.text
    await chat.push("spend 300", scope=scope, user="U1")
    await chat.wait_done(scope, 2)
    await chat.push("refused two", scope=scope, user="U1")
    await chat.wait_for(lambda: refusal(chat, "800 of 800 tokens"))
    lifted = await chat.command("budget", scope=scope, user="BOSS", args="lift")
    assert "no limits" in lifted.text
    await chat.push("answered at last", scope=scope, user="U1")
    await chat.wait_done(scope, 3)
    assert chat.texts(scope) == ["spent 500", "spent 300", "You said: answered at last"]
    assert not asked(spending, "refused one") and not asked(spending, "refused two")
    usage = await chat.command("usage", scope=scope, user="U1")
    assert "Lifted here today by lift:BOSS: no limits" in usage.text
    status = await chat.command("status", scope=scope, user="U1")
    assert "Budgets today: lifted here (no limits)" in status.text


async def test_a_scheduled_run_counts_against_its_creator(
    make_bot: BotMaker, spending: ScriptedModelServer,
) -> None:
    bot, chat = await make_bot("sched", budgets={"person_tokens": 1000})
    asked_here, scheduled_there = chat.scope("C1", "ask"), chat.scope("C2", "sched")
    await chat.push("spend 1000", scope=asked_here, user="U9")
    await chat.wait_done(asked_here)
    now = utcnow()
    for sid, user, prompt in (("b-1", "U9", "scheduled by nine"),
                              ("b-2", "U8", "scheduled by eight")):
        await bot.store.add_schedule(Schedule(id=sid, scope=scheduled_there.key, prompt=prompt,
                                              next_run=now, created_by=f"sched:{user}",
                                              created_at=now))
    bot.schedules.wake()
    note = await chat.wait_for(lambda: refusal(
        chat, "the daily budget of sched:U9 (who set up this schedule)"))
    assert note.scope == scheduled_there and note.user_id is None  # said to the thread
    await chat.wait_done(scheduled_there)
    assert chat.texts(scheduled_there) == ["You said: scheduled by eight"]
    assert not asked(spending, "scheduled by nine")


@pytest.mark.slow
async def test_usage_is_counted_across_a_restart(
    module_home: LettaHome, module_store: Store, spending: ScriptedModelServer,
) -> None:
    config = make_config(module_home, module_home.path / "data",
                         budgets={"person_tokens": 1000})
    async with Bot.open(config, store=module_store, grace=5) as bot:
        chat = TestChat(bot, name="restart")
        bot.add_adapter(chat)
        scope = chat.scope("C1", "restart")
        await chat.push("spend 900", scope=scope, user="U1")
        await chat.wait_done(scope)
    async with Bot.open(config, store=module_store, grace=5) as bot:
        chat = TestChat(bot, name="restart")
        bot.add_adapter(chat)
        usage = await chat.command("usage", scope=scope, user="U1")
        assert "• You: 900 tokens of 1,000" in usage.text
        await chat.push("spend 200", scope=scope, user="U1")  # 900 < 1000: it runs
        await chat.wait_done(scope)
        await chat.push("over now", scope=scope, user="U1")
        await chat.wait_for(lambda: refusal(chat, "1,100 of 1,000 tokens"))
        assert chat.texts(scope) == ["spent 200"] and not asked(spending, "over now")
