"""``/lettabot reset|status|stop|memory``: synced on start, run for the channel they are used in."""

from __future__ import annotations

import pytest
from discord_helpers import RecordingBot, World, running
from lettabot_discord import commands

from lettabot.runtime.adapter import CommandResult, Scope

pytestmark = pytest.mark.anyio


def _subcommands(synced: list[dict]) -> set[str]:
    [group] = [c for c in synced if c["name"] == "lettabot"]
    return {o["name"] for o in group["options"]}


async def test_synced_per_guild_and_run_in_a_thread(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    thread = fake.thread(world.channel, "a conversation")
    async with running(fake, bot, guild_ids=[int(world.guild["id"])]):
        assert _subcommands(fake.commands[world.guild["id"]]) == {
            "reset",
            "status",
            "stop",
            "memory",
            "rules",
            "schedules",
            "usage",
            "budget",
        }
        assert "global" not in fake.commands

        status = await fake.slash(thread, world.ada, "lettabot", "status")
        [answer] = await fake.wait_for(lambda: fake.responses_to(status))
        scope = Scope(
            adapter="discord",
            workspace=world.guild["id"],
            channel=world.channel["id"],
            thread=thread["id"],
        )
        assert bot.commands == [(scope, world.ada["id"], "status")]
        assert answer["type"] == 4 and answer["data"]["flags"] & 64  # status is ephemeral
        assert answer["data"]["content"] == f"status for {scope.key}"

        reset = await fake.slash(world.channel, world.bob, "lettabot", "reset")
        [answer] = await fake.wait_for(lambda: fake.responses_to(reset))
        assert bot.commands[1] == (
            Scope(adapter="discord", workspace=world.guild["id"], channel=world.channel["id"]),
            world.bob["id"],
            "reset",
        )
        assert not answer["data"].get("flags", 0) & 64  # everyone sees a reset


async def test_synced_globally_and_usable_in_a_dm(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    dm = fake.dm_channel(world.ada)
    async with running(fake, bot):
        expected = {"reset", "status", "stop", "memory", "rules", "schedules", "usage",
                    "budget"}
        assert _subcommands(fake.commands["global"]) == expected
        memory = await fake.slash(dm, world.ada, "lettabot", "memory")
        await fake.wait_for(lambda: fake.responses_to(memory))
        assert bot.commands == [
            (Scope(adapter="discord", channel=dm["id"], is_dm=True), world.ada["id"], "memory")
        ]


async def test_a_slow_command_is_deferred_then_answered(
    world: World, bot: RecordingBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = world.fake
    monkeypatch.setattr(commands, "_QUICK", 0.05)
    release = __import__("anyio").Event()

    async def slow(scope: Scope, user_id: str, command: str, args: str = "") -> CommandResult:
        await release.wait()
        return CommandResult(text="Memory: persona, human")

    bot.run_command = slow  # type: ignore[method-assign]
    async with running(fake, bot):
        memory = await fake.slash(world.channel, world.ada, "lettabot", "memory")
        [deferred] = await fake.wait_for(lambda: fake.responses_to(memory))
        assert deferred["type"] == 5  # "lettabot is thinking…"
        release.set()
        later = await fake.wait_for(lambda: fake.responses_to(memory)[1:])
        assert later[0]["type"] == "followup"
        assert later[0]["data"]["content"] == "Memory: persona, human"


async def test_commands_refused_outside_allowed_channels(world: World, bot: RecordingBot) -> None:
    fake = world.fake
    async with running(fake, bot, allowed_channels=[int(world.channel["id"])]):
        status = await fake.slash(world.other, world.ada, "lettabot", "status")
        [answer] = await fake.wait_for(lambda: fake.responses_to(status))
        assert (
            answer["data"]["flags"] & 64 and "not work in this channel" in answer["data"]["content"]
        )
        assert bot.commands == []
