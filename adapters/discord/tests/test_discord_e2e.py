"""End to end: the real runtime (``Bot``), the real ``letta`` CLI with the scripted model,
the adapter loaded through its ``lettabot.adapters`` entry point, real discord.py, and a
local fake Discord standing in for discord.com."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from lettabot_discord import DiscordAdapter
from lettabot_discord.testing import FakeDiscord

from lettabot.runtime.adapter import Scope
from lettabot.runtime.bot import Bot, adapter_settings
from lettabot.runtime.config import Config
from lettabot.runtime.store import Store, open_store
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import Reply, ScriptedModelServer

pytestmark = pytest.mark.anyio

TOKEN = "fake-bot-token"
Json = dict[str, Any]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def home(module_letta_home: LettaHome) -> LettaHome:
    return module_letta_home


@dataclass
class Setup:
    fake: FakeDiscord
    bot: Bot
    adapter: DiscordAdapter
    store: Store
    home: LettaHome
    guild: Json
    general: Json
    hurry: Json
    ada: Json
    bob: Json

    def config(self, **discord: Any) -> Config:
        return _config(self.home, **discord)

    async def reply_in(self, channel: Json, needle: str) -> Json:
        return await self.fake.wait_for(
            lambda: next(
                (m for m in self.fake.bot_messages(channel) if needle in m["content"]), None
            ),
            seconds=90,
        )

    def folder(self, channel: Json, thread: Json, bot: Bot | None = None) -> Path:
        """The folder of ``thread`` (under ``channel``): the only one its tools can reach."""
        key = f"discord:{self.guild['id']}:{channel['id']}:{thread['id']}"
        return (bot or self.bot).workspace_of(Scope.from_key(key))

    async def thread_of(self, message: Json) -> Json:
        return await self.fake.wait_for(lambda: self.fake.channels.get(int(message["id"])))

    async def prompt_in(self, channel: Json) -> Json:
        return await self.fake.wait_for(
            lambda: next((m for m in self.fake.bot_messages(channel) if m["components"]
                          and _buttons(m)[0].get("label") == "Approve"), None),
            seconds=90,
        )


def _config(home: LettaHome, **discord: Any) -> Config:
    return Config(
        _env_file=None,
        data_dir=home.path / "data",
        letta={"model": home.model},
        approvals={"timeout_seconds": 60},
        # an open server where each person approves their own turns: configured, as it must be
        access={"open": True, "self_approve": True},
        discord={"enabled": True, "token": TOKEN, **discord},
    )


@pytest.fixture(scope="module")
async def setup(home: LettaHome) -> AsyncIterator[Setup]:
    fake = FakeDiscord()
    guild = fake.guild()
    general, hurry = fake.channel(guild, "general"), fake.channel(guild, "hurry")
    await fake.start()
    try:
        with fake.patch_discord():
            async with open_store(str(home.path / "lettabot.db")) as store:
                config = _config(home, denied_channels=[int(hurry["id"])])
                async with Bot.open(config, store=store, grace=5) as bot:
                    factory = entry_points(group="lettabot.adapters")["discord"].load()
                    adapter = factory(adapter_settings(config)["discord"], bot)
                    bot.add_adapter(adapter)
                    await fake.wait_for(lambda: adapter.client.is_ready(), seconds=30)
                    yield Setup(
                        fake,
                        bot,
                        adapter,
                        store,
                        home,
                        guild,
                        general,
                        hurry,
                        fake.user("ada"),
                        fake.user("bob"),
                    )
        assert fake.unsuppressed() == [], fake.unsuppressed()  # link previews stay off
    finally:
        await fake.stop()


def _buttons(message: Json) -> list[Json]:
    return [b for row in message["components"] for b in row["components"]]


async def test_mention_opens_a_thread_and_the_thread_continues(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    fake = setup.fake
    asked = await fake.say(setup.general, setup.ada, "hello there", mention=True)
    thread = await setup.thread_of(asked)
    await setup.reply_in(thread, "You said: hello there")
    scope_key = f"discord:{setup.guild['id']}:{setup.general['id']}:{thread['id']}"
    [route] = [r for r in await setup.store.list_routes() if r.scope == scope_key]

    await fake.say(thread, setup.bob, "and a follow-up")  # no mention needed in the thread
    await setup.reply_in(thread, "You said: and a follow-up")
    [again] = [r for r in await setup.store.list_routes() if r.scope == scope_key]
    assert again.conversation_id == route.conversation_id  # the same conversation
    assert not fake.bot_messages(setup.general)  # nothing at the channel's top level
    assert fake.rest("POST", rf"/channels/{thread['id']}/typing$")  # typing while working


async def test_a_dm_is_answered_in_the_dm(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    dm = setup.fake.dm_channel(setup.ada)
    await setup.fake.say(dm, setup.ada, "hi in private")
    await setup.reply_in(dm, "You said: hi in private")


async def test_approve_after_an_unauthorised_click(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    fake = setup.fake
    # relative: the thread's conversation works in the thread's own folder
    asked = await fake.say(setup.general, setup.ada, "run: echo yes > approved.txt",
                           mention=True)
    thread = await setup.thread_of(asked)
    target = setup.folder(setup.general, thread) / "approved.txt"
    prompt = await setup.prompt_in(thread)
    assert "`Bash`" in prompt["content"] and "echo yes > approved.txt" in prompt["content"]
    assert f"Who may decide: <@{setup.ada['id']}>" in prompt["content"]  # the asker

    click = await fake.click(prompt, "Approve", setup.bob)
    _, refusal = await fake.wait_for(lambda: fake.responses_to(click)[1:]
                                     and fake.responses_to(click))
    assert refusal["data"]["flags"] & 64  # ephemeral: only bob sees it
    assert "Only the person whose message started this turn" in refusal["data"]["content"]
    assert not target.exists()

    click = await fake.click(prompt, "Approve", setup.ada)
    await setup.reply_in(thread, "Tool result")
    assert target.read_text() == "yes\n"
    assert prompt["content"].endswith("**Approved by ada**")
    assert all(b["disabled"] for b in _buttons(prompt))


async def test_deny_keeps_the_tool_from_running(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    fake = setup.fake
    asked = await fake.say(setup.general, setup.ada, "run: echo no > denied.txt", mention=True)
    thread = await setup.thread_of(asked)
    target = setup.folder(setup.general, thread) / "denied.txt"
    prompt = await setup.prompt_in(thread)
    await fake.click(prompt, "Deny", setup.ada)
    await fake.wait_for(lambda: prompt["content"].endswith("**Denied by ada**"))
    await fake.wait_for(lambda: len(fake.bot_messages(thread)) >= 2, seconds=90)
    assert all(b["disabled"] for b in _buttons(prompt))
    assert not target.exists()


async def test_long_replies_are_split_with_code_fences_intact(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    code = "\n".join(f"print('line {i:03}')" for i in range(200))
    long = f"Here is the script:\n\n```python\n{code}\n```\n\nAnd a closing paragraph."
    assert len(long) > 3000
    scripted_model.on("long script please", Reply.say(long))
    asked = await setup.fake.say(setup.general, setup.ada, "long script please", mention=True)
    thread = await setup.thread_of(asked)
    await setup.reply_in(thread, "And a closing paragraph.")
    parts = [m["content"] for m in setup.fake.bot_messages(thread)]
    assert len(parts) >= 2
    assert all(len(p) <= 2000 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts)  # every part's fences are closed
    for i in range(200):
        assert sum(f"print('line {i:03}')" in p for p in parts) == 1


async def test_slash_commands_act_on_the_thread(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    fake = setup.fake
    asked = await fake.say(setup.general, setup.ada, "remember this thread", mention=True)
    thread = await setup.thread_of(asked)
    await setup.reply_in(thread, "You said: remember this thread")
    scope_key = f"discord:{setup.guild['id']}:{setup.general['id']}:{thread['id']}"
    [route] = [r for r in await setup.store.list_routes() if r.scope == scope_key]

    status = await fake.slash(thread, setup.ada, "lettabot", "status")
    [answer] = await fake.wait_for(lambda: fake.responses_to(status))
    text = answer["data"].get("content") or ""
    if answer["type"] == 5:  # deferred on a slow machine: the follow-up has the text
        followup = await fake.wait_for(lambda: fake.responses_to(status)[1:])
        text = followup[0]["data"]["content"]
    else:
        assert answer["data"]["flags"] & 64
    assert f"Conversation: `{route.conversation_id}`" in text

    reset = await fake.slash(thread, setup.ada, "lettabot", "reset")
    answers = await fake.wait_for(
        lambda: [r for r in fake.responses_to(reset) if r["data"].get("content")]
    )
    assert "Started a new conversation here" in answers[0]["data"]["content"]
    await fake.say(thread, setup.ada, "after the reset")
    await setup.reply_in(thread, "You said: after the reset")
    [fresh] = [r for r in await setup.store.list_routes() if r.scope == scope_key]
    assert fresh.conversation_id != route.conversation_id


async def test_no_decision_in_time_disables_the_prompt(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    """A second bot, with a short approval timeout, serves only the #hurry channel."""
    config = setup.config(allowed_channels=[int(setup.hurry["id"])]).model_copy(
        update={"approvals": setup.config().approvals.model_copy(update={"timeout_seconds": 1.5})}
    )
    async with Bot.open(config, store=setup.store, grace=5) as bot:
        adapter = DiscordAdapter(
            setup.adapter.settings.model_copy(
                update={"allowed_channels": [int(setup.hurry["id"])], "denied_channels": []}
            ),
            bot,
            guild_ready_timeout=0.05,
        )
        bot.add_adapter(adapter)
        await setup.fake.wait_for(lambda: adapter.client.is_ready(), seconds=30)
        asked = await setup.fake.say(
            setup.hurry, setup.ada, "run: echo late > late.txt", mention=True
        )
        thread = await setup.thread_of(asked)
        target = setup.folder(setup.hurry, thread, bot) / "late.txt"
        prompt = await setup.prompt_in(thread)
        await setup.fake.wait_for(lambda: prompt["content"].endswith("**Timed out**"), seconds=30)
        assert all(b["disabled"] for b in _buttons(prompt))
        click = await setup.fake.click(prompt, "Approve", setup.ada)
        # both bots' adapters see the click (one fake Discord); each answers from the store
        answers = await setup.fake.wait_for(
            lambda: [a for a in setup.fake.responses_to(click) if a["type"] == "followup"])
        assert all(a["data"]["flags"] & 64 and "timed out" in a["data"]["content"] for a in answers)
        assert not target.exists()


async def test_a_mention_received_just_before_shutdown_is_told_not_dropped(
    home: LettaHome, tmp_path: Any
) -> None:
    """discord.py runs on_message outside lettabot's task group. A mention whose thread was
    still being opened when the bot stopped must still reach the runtime (which, draining,
    asks to send it again) before the client closes."""
    fake = FakeDiscord()
    guild = fake.guild()
    general = fake.channel(guild, "general")
    await fake.start()
    try:
        with fake.patch_discord():
            async with open_store(str(tmp_path / "shutdown.db")) as store:
                config = _config(home)
                async with Bot.open(config, store=store, grace=5) as bot:
                    factory = entry_points(group="lettabot.adapters")["discord"].load()
                    adapter = factory(adapter_settings(config)["discord"], bot)
                    bot.add_adapter(adapter)
                    await fake.wait_for(lambda: adapter.client.is_ready(), seconds=30)
                    fake.delay("POST", r"/messages/\d+/threads$", 1.5)
                    asked = await fake.say(general, fake.user("ada"), "right before the end",
                                           mention=True)
                    await fake.wait_for(lambda: fake.rest("POST", r"/threads$") or None)
                # the bot has stopped
            thread = fake.channels.get(int(asked["id"]))
            told = [m["content"] for ch in (general, thread) if ch
                    for m in fake.bot_messages(ch)]
            assert any("send that again" in t or "You said" in t for t in told), told
    finally:
        await fake.stop()


async def test_attachments_reach_the_agent(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    """A Discord attachment is fetched from the CDN: a text file lands in the agent's
    workspace (it is told where), a picture goes to the model as an image."""
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")
    scripted_model.on("read my files", Reply.say("Read them."))
    asked = await setup.fake.say(setup.general, setup.ada, "read my files", mention=True,
                                 files=[("report.csv", b"a,b\n1,2\n", "text/csv"),
                                        ("photo.png", png, "image/png")])
    thread = await setup.thread_of(asked)
    await setup.reply_in(thread, "Read them.")
    [request] = [r for r in scripted_model.requests if "read my files" in r.user_text]
    match = re.search(r"saved in your working folder as (\S+report\.csv)", request.user_text)
    assert match, request.user_text
    workspace = setup.folder(setup.general, thread)  # the thread's own folder
    assert (workspace / match.group(1)).read_bytes() == b"a,b\n1,2\n"
    assert request.images or "(image omitted: model does not support images)" in str(
        request.messages[-1]["content"])


async def test_an_answer_gets_feedback_buttons_and_a_click_is_stored(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    fake = setup.fake
    scripted_model.on("rate this answer", Reply.say("An answer to rate."))
    asked = await fake.say(setup.general, setup.ada, "rate this answer", mention=True)
    thread = await setup.thread_of(asked)
    answer = await fake.wait_for(lambda: next(
        (m for m in fake.bot_messages(thread) if m["content"] == "An answer to rate."
         and m["components"]), None), seconds=90)
    assert [b.get("label") for b in _buttons(answer)] == ["Good", "Bad"]
    click = await fake.click(answer, "Bad", setup.bob)
    reply = await fake.wait_for(lambda: [r for r in fake.responses_to(click)
                                         if "content" in (r.get("data") or {})])
    assert reply[-1]["data"]["flags"] & 64 and "noted" in reply[-1]["data"]["content"]
    scope = f"discord:{setup.guild['id']}:{setup.general['id']}:{thread['id']}"
    [stored] = await setup.store.list_feedback(scope)
    assert (stored.message_ref, stored.user_id, stored.rating) == (
        answer["id"], f"discord:{setup.bob['id']}", "bad")


async def test_the_agent_reacts_and_sends_a_file_on_discord(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    fake = setup.fake
    scripted_model.on("react with tada", Reply.tool("react", emoji="tada"))
    asked = await fake.say(setup.general, setup.ada, "react with tada", mention=True)
    await fake.wait_for(lambda: fake.reactions.get(int(asked["id"])))
    assert fake.reactions[int(asked["id"])] == ["🎉"]
    scripted_model.on("send the summary", Reply.tool("send_file", path="summary.txt"))
    scripted_model.on("a thread for the summary", Reply.say("Here."))
    asked = await fake.say(setup.general, setup.ada, "a thread for the summary", mention=True)
    thread = await setup.thread_of(asked)
    await setup.reply_in(thread, "Here.")
    (setup.folder(setup.general, thread) / "summary.txt").write_text("all good\n")
    await fake.say(thread, setup.ada, "send the summary", mention=True)
    sent = await fake.wait_for(lambda: [f for f in fake.sent_files if f[0] == int(thread["id"])])
    assert sent == [(int(thread["id"]), "summary.txt", b"all good\n")]


async def test_a_long_turn_has_a_stop_button(
    setup: Setup, scripted_model: ScriptedModelServer
) -> None:
    fake = setup.fake
    scripted_model.on("ponder at length", Reply.say("Pondering " + "more " * 30,
                                                    chunk_delay=0.5))
    asked = await fake.say(setup.general, setup.ada, "ponder at length", mention=True)
    thread = await setup.thread_of(asked)
    stop = await fake.wait_for(lambda: next(
        (m for m in fake.bot_messages(thread) if m["components"]
         and _buttons(m)[0].get("label") == "Stop"), None), seconds=60)
    refused = await fake.click(stop, "Stop", setup.bob)
    answer = await fake.wait_for(lambda: [r for r in fake.responses_to(refused)
                                          if "content" in (r.get("data") or {})])
    assert answer[-1]["data"]["flags"] & 64 and "Only the person who asked" in \
        answer[-1]["data"]["content"]
    await fake.click(stop, "Stop", setup.ada)
    await setup.reply_in(thread, "(stopped)")
    await fake.wait_for(lambda: int(stop["id"]) in fake.deleted)
