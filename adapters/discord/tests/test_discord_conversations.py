"""Messages in: mentions open threads, threads continue, DMs, filters and allow lists."""

from __future__ import annotations

import pytest
from conftest import RecordingBot, World, running

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
