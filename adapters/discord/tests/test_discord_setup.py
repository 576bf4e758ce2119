"""What the README tells people to configure matches what the adapter asks Discord for."""

from __future__ import annotations

from pathlib import Path

import pytest
from lettabot_discord import PERMISSIONS, DiscordAdapter, DiscordAdapterError, intents
from lettabot_discord.settings import DiscordSettings
from lettabot_discord.testing import FakeDiscord

from lettabot.runtime.config import ConfigError, load_config

README = (Path(__file__).parents[1] / "README.md").read_text()

pytestmark = pytest.mark.anyio


def test_invite_url_permissions_are_what_the_bot_needs() -> None:
    assert PERMISSIONS.value == 309237713920
    assert f"permissions={PERMISSIONS.value}" in README
    bits = [10, 11, 16, 35, 38]  # view, send, read history, public threads, send in threads
    assert PERMISSIONS.value == sum(1 << b for b in bits)
    assert all(f"| 1 << {b} |" in README for b in bits)


def test_intents_are_the_documented_ones() -> None:
    assert {name for name, on in intents() if on} == {
        "guilds",
        "guild_messages",
        "dm_messages",
        "message_content",
    }
    assert not intents().members and not intents().presences  # no other privileged intent


def test_settings_come_from_the_discord_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LETTABOT_DISCORD__TOKEN", "MTAx.secret")
    file = tmp_path / "lettabot.toml"
    file.write_text('[discord]\nenabled = true\nguild_ids = [42]\nreply_mode = "inline"\n')
    config = load_config(file, env_file=None)
    settings = DiscordSettings.from_mapping(dict(config.discord))
    assert settings.token_value() == "MTAx.secret" and settings.guild_ids == [42]
    assert settings.reply_mode == "inline"
    assert "MTAx.secret" not in repr(settings)

    file.write_text("[discord]\nenabled = true\n")
    monkeypatch.delenv("LETTABOT_DISCORD__TOKEN")
    with pytest.raises(ConfigError, match="LETTABOT_DISCORD__TOKEN"):
        load_config(file, env_file=None)


async def test_running_without_a_token_says_how_to_fix_it() -> None:
    class NoBot:
        pass

    adapter = DiscordAdapter(DiscordSettings(), NoBot())  # type: ignore[arg-type]
    with pytest.raises(DiscordAdapterError, match="LETTABOT_DISCORD__TOKEN"):
        await adapter.run()
    await adapter.client.close()


async def test_a_rejected_token_is_a_config_error_that_names_the_fix() -> None:
    """A ConfigError: `lettabot run` prints it in one line and exits 2 (no traceback)."""

    class NoBot:
        pass

    fake = FakeDiscord()
    fake.guild()
    await fake.start()
    fake.fail("GET", r"^/users/@me$", status=401, times=10)
    try:
        with fake.patch_discord():
            adapter = DiscordAdapter(DiscordSettings(token="MTAx.rejected"),
                                     NoBot())  # type: ignore[arg-type]
            with pytest.raises(ConfigError, match="Discord rejected the bot token"):
                await adapter.run()
    finally:
        await fake.stop()
