"""Messages in: mentions open threads, threads continue, DMs, filters and allow lists."""

from __future__ import annotations

import pytest
from discord_helpers import RecordingBot, World, running

from lettabot.runtime.adapter import Scope

pytestmark = pytest.mark.anyio


async def test_mention_opens_a_thread_and_the_thread_continues(
    world: World, bot: RecordingBot
) -> None:
    fake = world.fake
    async with running(fake, bot) as adapter:
        asked = await fake.say(
            world.channel, world.ada, "what is our deploy process?", mention=True
        )
        first = (await fake.wait_for(lambda: bot.messages))[0]

        thread = fake.channels[int(asked["id"])]
        assert thread["type"] == 11 and thread["parent_id"] == world.channel["id"]
        assert thread["name"] == "what is our deploy process?"
        assert first.scope == Scope(
            adapter="discord",
            workspace=world.guild["id"],
            channel=world.channel["id"],
            thread=thread["id"],
        )
        assert first.text == "what is our deploy process?"
        assert first.mentioned and first.user_id == world.ada["id"]
        assert first.message_id == asked["id"]

        ref = await adapter.post(first.scope, "Here is **how** we deploy.")
        [reply] = fake.bot_messages(thread)
        assert reply["id"] == ref.id and reply["content"] == "Here is **how** we deploy."
        assert not fake.bot_messages(world.channel)  # nothing at the channel's top level

        await fake.say(thread, world.bob, "and rollbacks?")
        second = (await fake.wait_for(lambda: bot.messages[1:]))[0]
        assert second.scope == first.scope
        assert second.text == "and rollbacks?" and not second.mentioned
        assert len(bot.messages) == 2  # the bot's own reply was not delivered


async def test_dm_is_its_own_scope(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    dm = fake.dm_channel(world.ada)
    async with running(fake, bot) as adapter:
        await fake.say(dm, world.ada, "hello there")
        [msg] = await fake.wait_for(lambda: bot.messages)
        assert msg.scope == Scope(adapter="discord", channel=dm["id"], is_dm=True)
        assert msg.scope.workspace == "" and msg.mentioned
        await adapter.post(msg.scope, "Hi!")
        assert [m["content"] for m in fake.bot_messages(dm)] == ["Hi!"]
        assert not fake.rest("POST", r"/threads$")


async def test_inline_mode_answers_in_the_channel(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    async with running(fake, bot, reply_mode="inline"):
        await fake.say(world.channel, world.ada, "status?", mention=True)
        [msg] = await fake.wait_for(lambda: bot.messages)
        assert msg.scope == Scope(
            adapter="discord", workspace=world.guild["id"], channel=world.channel["id"]
        )
        assert not fake.rest("POST", r"/threads$")


async def test_what_is_not_passed_on(world: World, bot: RecordingBot) -> None:
    """Other bots, denied channels, other guilds; the bot's own messages."""
    fake = world.fake
    robot = fake.user("ci-bot", bot=True)
    other_guild = fake.guild("elsewhere")
    elsewhere = fake.channel(other_guild, "general")
    settings = {
        "guild_ids": [int(world.guild["id"])],
        "denied_channels": [int(world.other["id"])],
    }
    async with running(fake, bot, **settings):
        await fake.say(world.channel, robot, "deploy finished", mention=True)
        await fake.say(world.other, world.ada, "denied channel", mention=True)
        await fake.say(elsewhere, world.ada, "other guild", mention=True)
        await fake.say(world.channel, world.bob, "the marker", mention=True)
        [msg] = await fake.wait_for(lambda: bot.messages)
        assert msg.text == "the marker"
        assert len(fake.rest("POST", r"/threads$")) == 1  # only for the marker


async def test_someone_elses_thread(world: World, bot: RecordingBot) -> None:
    """In a thread, nothing new is opened; the message says whether it mentions the bot."""
    fake = world.fake
    theirs = fake.thread(world.channel, "people talking", owner=world.ada)
    async with running(fake, bot):
        await fake.say(theirs, world.bob, "no mention here")
        await fake.say(theirs, world.bob, "now asking", mention=True)
        plain, asking = await fake.wait_for(lambda: bot.messages[1:] and bot.messages)
        assert (
            plain.scope
            == asking.scope
            == Scope(
                adapter="discord",
                workspace=world.guild["id"],
                channel=world.channel["id"],
                thread=theirs["id"],
            )
        )
        assert not plain.mentioned and asking.mentioned and asking.text == "now asking"
        assert not fake.rest("POST", r"/threads$")


async def test_allowed_channels_and_other_bots_when_allowed(
    world: World, bot: RecordingBot
) -> None:
    fake = world.fake
    robot = fake.user("ci-bot", bot=True)
    settings = {"allowed_channels": [int(world.channel["id"])], "allow_bots": True}
    async with running(fake, bot, reply_mode="inline", **settings):
        await fake.say(world.other, world.ada, "not listed", mention=True)
        await fake.say(world.channel, robot, "from a bot", mention=True)
        [msg] = await fake.wait_for(lambda: bot.messages)
        assert msg.text == "from a bot" and msg.is_bot


async def test_top_level_chatter_is_passed_on_unmentioned(world: World, bot: RecordingBot) -> None:
    """Without a mention nothing opens a thread; the runtime decides (require_mention)."""
    fake = world.fake
    async with running(fake, bot):
        await fake.say(world.channel, world.ada, "lunch anyone?")
        [msg] = await fake.wait_for(lambda: bot.messages)
        assert not msg.mentioned and msg.scope.thread is None
        assert not fake.rest("POST", r"/threads$")


async def test_no_thread_is_opened_for_someone_the_bot_will_refuse(
    world: World, bot: RecordingBot
) -> None:
    fake = world.fake
    bot.refused.add(world.bob["id"])
    async with running(fake, bot):
        asked = await fake.say(world.channel, world.bob, "let me in", mention=True)
        [refused] = await fake.wait_for(lambda: bot.messages)
        assert int(asked["id"]) not in fake.channels  # no thread was created on it
        assert refused.scope.thread is None  # the runtime refuses it in the channel


async def test_a_replayed_mention_stays_in_its_thread(world: World, bot: RecordingBot) -> None:
    """Discord may deliver a message twice; the second thread attempt gets 160004. Both
    deliveries must name the same thread (so the runtime answers once, there), never the
    channel — which would also make the channel a conversation that needs no mention."""
    fake = world.fake
    async with running(fake, bot):
        asked = await fake.say(world.channel, world.ada, "deploy status?", mention=True)
        await fake.wait_for(lambda: bot.messages)
        await fake.redeliver(asked)
        first, second = await fake.wait_for(lambda: bot.messages[1:] and bot.messages)
        assert first.scope.thread == asked["id"]
        assert second.scope == first.scope and second.dedupe_id == first.dedupe_id
