"""``shard_count`` / ``shard_ids``: a replica connects only its shards (the IDENTIFY says
which), so replicas split the guilds. Against the fake gateway, which routes a guild's
events to the session of its shard as Discord does."""

from __future__ import annotations

from pathlib import Path

import pytest
from discord_helpers import TOKEN, RecordingBot, running
from lettabot_discord.settings import DiscordSettings
from lettabot_discord.testing import FakeDiscord

from lettabot.runtime.config import ConfigError, load_config

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("toml", "says"), [
    ("shard_count = 0", "shard_count"),
    ("shard_ids = [0]", "shard_ids: is set without shard_count"),
    ("shard_count = 2\nshard_ids = [2]", "outside 0 … 1"),
    ("shard_count = 2\nshard_ids = [-1]", "outside 0 … 1"),
    ("shard_count = 3\nshard_ids = [1, 1]", "repeats a shard id"),
])
def test_shard_settings_are_checked(tmp_path: Path, toml: str, says: str) -> None:
    file = tmp_path / "lettabot.toml"
    file.write_text(f'[discord]\nenabled = true\ntoken = "{TOKEN}"\n{toml}\n')
    with pytest.raises(ConfigError, match=says):
        load_config(file, env_file=None)


def test_shard_settings_load(tmp_path: Path) -> None:
    file = tmp_path / "lettabot.toml"
    file.write_text(f'[discord]\nenabled = true\ntoken = "{TOKEN}"\n'
                    "shard_count = 4\nshard_ids = [2, 3]\n")
    settings = DiscordSettings.from_mapping(dict(load_config(file, env_file=None).discord))
    assert settings.sharding() == {"shard_count": 4, "shard_ids": [2, 3]}
    assert DiscordSettings().sharding() == {}  # unsharded: one plain gateway session


async def test_unsharded_identifies_as_the_only_shard(fake: FakeDiscord, bot: RecordingBot,
                                                      ) -> None:
    async with running(fake, bot):
        pass
    assert [i.get("shard", [0, 1]) for i in fake.identify] == [[0, 1]]


async def test_the_configured_shards_are_identified(fake: FakeDiscord,
                                                    bot: RecordingBot) -> None:
    async with running(fake, bot, shard_count=4, shard_ids=[1, 3]) as adapter:
        assert adapter.client.shard_count == 4
    assert sorted(i["shard"] for i in fake.identify) == [[1, 4], [3, 4]]
    fake.identify.clear()
    async with running(fake, bot, shard_count=2):  # no ids: every shard here
        pass
    assert sorted(i["shard"] for i in fake.identify) == [[0, 2], [1, 2]]


async def test_two_replicas_split_the_guilds(fake: FakeDiscord) -> None:
    guilds = [fake.guild("zero", shard=(0, 2)), fake.guild("one", shard=(1, 2))]
    assert [FakeDiscord.shard_of(g["id"], 2) for g in guilds] == [0, 1]
    channels = [fake.channel(g, "general") for g in guilds]
    ada = fake.user("ada")
    bots = [RecordingBot(), RecordingBot()]
    async with (running(fake, bots[0], shard_count=2, shard_ids=[0]) as first,
                running(fake, bots[1], shard_count=2, shard_ids=[1]) as second):
        assert {g.id for g in first.client.guilds} == {int(guilds[0]["id"])}
        assert {g.id for g in second.client.guilds} == {int(guilds[1]["id"])}
        for channel in channels:
            await fake.say(channel, ada, "hello", mention=True)
        await fake.wait_for(lambda: all(b.messages for b in bots) or None)
    # each message reached the replica of its guild's shard, and only that one
    assert [[m.scope.workspace for m in b.messages] for b in bots] == [
        [guilds[0]["id"]], [guilds[1]["id"]]]
