"""The agent acts in the chat through lettabot's tools (react, send_file, schedule), end to
end: the real CLI calls them as custom tools, the scripted model decides to."""

from __future__ import annotations

import os
from datetime import timedelta

import anyio
import pytest

from lettabot.runtime.bot import Bot
from lettabot.runtime.store import Schedule, Store, utcnow
from lettabot.testing.chat import TestChat
from lettabot.testing.scripted_model import Reply, ScriptedModelServer
from tests.runtime.bot_fixtures import *  # noqa: F403 (fixtures)
from tests.runtime.bot_fixtures import BotMaker

pytestmark = pytest.mark.anyio


async def test_the_agent_reacts_to_the_message_without_a_click(
    module_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer
) -> None:
    _, chat = module_bot
    scripted_model.on("ship it", Reply.tool("react", emoji="🚀"))
    scope = chat.scope("C1", "react")
    message = await chat.push("ship it", scope=scope)
    await chat.wait_done(scope)
    assert chat.reactions == [(scope, message.message_id, "🚀")]
    assert not [p for p in chat.prompts if p.view.scope == scope]  # no approval asked
    assert "react" in scripted_model.requests[-1].tool_names


async def test_the_agent_sends_a_file_of_its_workspace(
    module_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer
) -> None:
    bot, chat = module_bot
    scope = chat.scope("C1", "send")
    (bot.workspace_of(scope) / "report.csv").write_text("a,b\n1,2\n")
    scripted_model.on("send the report",
                      Reply.tool("send_file", path="report.csv", comment="Here it is"))
    await chat.push("send the report", scope=scope)
    await chat.wait_done(scope)
    [sent] = [f for f in chat.files if f.scope == scope]
    assert (sent.name, sent.data, sent.comment) == ("report.csv", b"a,b\n1,2\n", "Here it is")
    assert "Sent report.csv" in scripted_model.requests[-1].tool_result


@pytest.mark.parametrize("target", ["outside", "symlink", "store", "home"])
async def test_send_file_cannot_leak_what_reads_without_a_click_cannot(
    module_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer, target: str
) -> None:
    """Someone who may talk but not approve asks the agent to post a secret: refused."""
    bot, chat = module_bot
    scope = chat.scope("C1", f"leak-{target}")
    workspace = bot.workspace_of(scope)
    secret = bot.config.letta_cwd.parent.parent / f"secret-{target}.env"
    secret.write_text("API_KEY=sk-live-123\n")
    path = {
        "outside": str(secret),
        "symlink": f"link-{target}.txt",
        "store": str(bot.config.data_dir / "lettabot.db"),
        "home": "~/.letta/settings.json",
    }[target]
    if target == "symlink":
        (workspace / path).unlink(missing_ok=True)
        os.symlink(secret, workspace / path)
    scripted_model.on(f"leak {target}", Reply.tool("send_file", path=path))
    await chat.push(f"leak {target}", scope=scope)
    await chat.wait_done(scope)
    assert not [f for f in chat.files if f.scope == scope]
    assert "outside your working folder" in scripted_model.requests[-1].tool_result


async def test_a_schedule_runs_its_prompt_in_the_thread_once(
    make_bot: BotMaker, scripted_model: ScriptedModelServer
) -> None:
    bot, chat = await make_bot("sched-once", chat_tools={"min_delay_minutes": 0})
    scripted_model.on("check the deploy soon",
                      Reply.tool("schedule", prompt="deploy-check now", in_minutes=0.03))
    scripted_model.on("deploy-check now", Reply.say("The deploy looks healthy."))
    scope = chat.scope("C1", "schedule-once")
    await chat.push("check the deploy soon", scope=scope, user="U7")
    await chat.wait_done(scope)
    note = await chat.wait_for(lambda: next((n for n in chat.notes if n.scope == scope
                                             and "Scheduled" in n.text), None))
    assert "schedules cancel s-" in note.text
    await chat.wait_done(scope, 2, within=60)
    assert chat.texts(scope)[-1] == "The deploy looks healthy."
    request = scripted_model.requests[-1]
    assert request.user_text.endswith("deploy-check now")
    assert "schedule s-" in str(request.messages[-1])
    assert await bot.store.list_schedules(scope.key) == []  # a one-off is done
    await anyio.sleep(1.5)
    assert chat.texts(scope).count("The deploy looks healthy.") == 1


async def test_a_scheduled_run_asks_before_running_tools(
    make_bot: BotMaker, scripted_model: ScriptedModelServer
) -> None:
    """A run is its creator's turn: a shell command still waits for a click, and only
    an approver (or, with self-approval, the creator) may give it."""
    bot, chat = await make_bot("sched-approve")
    scope = chat.scope("C1", "schedule-tools")
    target = bot.workspace_of(scope) / "scheduled.txt"
    now = utcnow()
    await bot.store.add_schedule(Schedule(
        id="s-tools", scope=scope.key, prompt=f"run: echo hi > {target}", next_run=now,
        created_by=f"{chat.name}:U5", created_at=now))
    bot.schedules.wake()
    prompt = await chat.wait_prompt(scope)
    assert prompt.view.tool_name == "Bash" and prompt.view.requested_by == "U5"
    assert not target.exists()
    outcome = await chat.click(prompt.request_id, "approve", user="U6")
    assert outcome.status == "not_authorized"
    await chat.click(prompt.request_id, "approve", user="U5")
    await chat.wait_done(scope)
    assert target.read_text() == "hi\n"


async def test_too_frequent_and_too_many_schedules_are_refused(
    make_bot: BotMaker, scripted_model: ScriptedModelServer
) -> None:
    bot, chat = await make_bot("sched-limits", chat_tools={"schedules_per_scope": 1})
    scope = chat.scope("C1", "limits")
    scripted_model.on("every minute", Reply.tool("schedule", prompt="x", cron="* * * * *"))
    await chat.push("every minute", scope=scope)
    await chat.wait_done(scope)
    assert "shortest allowed interval is 10 minutes" in scripted_model.requests[-1].tool_result
    scripted_model.on("daily one", Reply.tool("schedule", prompt="x", cron="0 9 * * *",
                                              timezone="Europe/Berlin"))
    scripted_model.on("daily two", Reply.tool("schedule", prompt="y", cron="0 10 * * *"))
    await chat.push("daily one", scope=scope)
    await chat.wait_done(scope, 2)
    await chat.push("daily two", scope=scope)
    await chat.wait_done(scope, 3)
    assert "the limit" in scripted_model.requests[-1].tool_result
    [kept] = await bot.store.list_schedules(scope.key)
    assert (kept.cron, kept.timezone) == ("0 9 * * *", "Europe/Berlin")


async def test_a_one_off_cannot_be_due_sooner_than_the_minimum_delay(
    module_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer
) -> None:
    bot, chat = module_bot
    scope = chat.scope("C1", "schedule-too-soon")
    scripted_model.on("remind me right away",
                      Reply.tool("schedule", prompt="x", in_minutes=0.1))
    await chat.push("remind me right away", scope=scope)
    await chat.wait_done(scope)
    assert "at least 1 minute" in scripted_model.requests[-1].tool_result
    assert await bot.store.list_schedules(scope.key) == []


async def test_a_scheduled_run_cannot_schedule_itself_again(
    make_bot: BotMaker, scripted_model: ScriptedModelServer
) -> None:
    """A one-off whose run schedules the same prompt again would run for ever: in a
    scheduled run the ``schedule`` tool refuses (a person asks for a new one)."""
    bot, chat = await make_bot("sched-loop")  # the refusal comes before any delay check
    scope = chat.scope("C1", "schedule-loop")
    scripted_model.on("loop-step", Reply.tool("schedule", prompt="loop-step", in_minutes=0.02))
    now = utcnow()
    await bot.store.add_schedule(Schedule(
        id="s-loop", scope=scope.key, prompt="loop-step", next_run=now,
        created_by=f"{chat.name}:U7", created_at=now))
    bot.schedules.wake()
    await chat.wait_done(scope, within=60)
    [tried] = [r for r in scripted_model.requests if r.after_tool
               and "loop-step" in str(r.messages)]
    assert "scheduled run" in tried.tool_result
    await anyio.sleep(4)  # a re-armed one-off would have run again by now (1.2 s)
    assert chat.done_count.get(scope.key) == 1
    assert await bot.store.list_schedules(scope.key) == []


async def test_the_bot_keeps_at_most_schedules_per_bot(
    make_bot: BotMaker, module_store: Store, scripted_model: ScriptedModelServer
) -> None:
    """Each thread stays under its own cap; all threads together under the bot's."""
    existing = len([s for s in await module_store.list_schedules() if s.source == "chat"])
    bot, chat = await make_bot("sched-bot-cap",
                               chat_tools={"schedules_per_bot": existing + 1})
    scripted_model.on("daily standup", Reply.tool("schedule", prompt="standup", cron="0 9 * * *"))
    first, second = chat.scope("C1", "cap-a"), chat.scope("C2", "cap-b")
    await chat.push("daily standup", scope=first)
    await chat.wait_done(first)
    assert "Scheduled" in scripted_model.requests[-1].tool_result
    await chat.push("daily standup", scope=second)
    await chat.wait_done(second)
    assert "this bot has" in scripted_model.requests[-1].tool_result
    assert await bot.store.list_schedules(second.key) == []


async def test_the_schedules_command_lists_and_only_its_creator_or_an_approver_cancels(
    make_bot: BotMaker,
) -> None:
    bot, chat = await make_bot("sched-cmd", access={"approvers": ["sched-cmd:BOSS"]})
    scope = chat.scope("C1", "cmd")
    now = utcnow()
    for sid, user in (("s-a", "U1"), ("s-b", "U1")):
        await bot.store.add_schedule(Schedule(
            id=sid, scope=scope.key, prompt="post the standup", cron="0 9 * * 1-5",
            timezone="UTC", next_run=now + timedelta(hours=1),
            created_by=f"sched-cmd:{user}", created_at=now))
    listed = await chat.command("schedules", scope=scope, user="U2")
    assert "`s-a`" in listed.text and "`s-b`" in listed.text and "0 9 * * 1-5" in listed.text
    refused = await chat.command("schedules", scope=scope, user="U2", args="cancel s-a")
    assert "Not cancelled" in refused.text
    assert (await chat.command("schedules", scope=scope, user="U1", args="cancel s-a")).text \
        .startswith("Cancelled schedule s-a")
    assert (await chat.command("schedules", scope=scope, user="BOSS", args="cancel s-b")).text \
        .startswith("Cancelled schedule s-b")
    assert await bot.store.list_schedules(scope.key) == []


async def test_config_schedules_are_kept_in_step_with_the_config(make_bot: BotMaker) -> None:
    entry = {"name": "standup", "cron": "30 9 * * 1-5", "timezone": "Europe/Berlin",
             "target": "sched-cfg:W1:C9", "prompt": "Post the standup thread."}
    bot, _ = await make_bot("sched-cfg", schedules=[entry])
    [stored] = [s for s in await bot.store.list_schedules() if s.source == "config"]
    assert (stored.id, stored.cron, stored.scope) == ("config-standup", "30 9 * * 1-5",
                                                      "sched-cfg:W1:C9")
    await bot.schedules.sync_config([])
    assert not [s for s in await bot.store.list_schedules() if s.source == "config"]


async def test_a_long_reply_comes_as_a_file_too(
    module_bot: tuple[Bot, TestChat], scripted_model: ScriptedModelServer
) -> None:
    _, chat = module_bot
    long = "\n\n".join(f"Paragraph {i}: " + "words " * 150 for i in range(40))
    scripted_model.on("write the long report", Reply.say(long))
    scope = chat.scope("C1", "long")
    await chat.push("write the long report", scope=scope)
    await chat.wait_done(scope)
    assert len(chat.messages(scope)) == 4  # chat_tools.reply_as_file_after
    [sent] = [f for f in chat.files if f.scope == scope]
    assert sent.name == "reply.md" and sent.data.decode() == long.strip()


async def test_a_long_turn_shows_a_stop_button_until_it_ends(
    make_bot: BotMaker, scripted_model: ScriptedModelServer
) -> None:
    _, chat = await make_bot("stop-button", turns={"stop_button_after": 0.5})
    scripted_model.on("think slowly", Reply.say("Slow thoughts.", delay=3.0))
    scope = chat.scope("C1", "stop-button")
    await chat.push("think slowly", scope=scope)
    await chat.wait_for(lambda: chat.stop_buttons or None)
    assert list(chat.stop_buttons.values()) == [False]  # shown while it runs
    assert not chat.texts(scope)  # before the answer
    await chat.wait_done(scope)
    assert list(chat.stop_buttons.values()) == [True]  # one, removed when the turn ended
    assert chat.texts(scope) == ["Slow thoughts."]
