"""The adapter's settings: the ``[discord]`` section, validated once (by the config loader)
and handed to :func:`~lettabot_discord.create_adapter` as this model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator

from lettabot.runtime.config import ChatAdapterSettings, is_blank, missing

__all__ = ["DiscordConfig", "DiscordSettings"]


class DiscordConfig(ChatAdapterSettings):
    """The ``[discord]`` section (``LETTABOT_DISCORD__*``): the ``lettabot.settings`` entry
    point ``discord``. Discord (discord.py); empty ``guild_ids`` / ``allowed_channels``:
    wherever the bot is.

    Who may talk (``access.allowed_users``), whether a mention is needed and the
    ``unauthorized_reply`` are the runtime's access policy; the adapter applies the
    places (guilds, channels) and drops other bots' messages unless ``allow_bots``.
    """

    enabled: bool = False
    """Run the Discord adapter. Needs token."""
    token: SecretStr | None = Field(default=None, examples=["MTAx..."])
    """Bot token (Developer Portal → Bot). Prefer LETTABOT_DISCORD__TOKEN."""
    guild_ids: list[int] = Field(default_factory=list, examples=[[123456789012345678]])
    """Guild (server) ids the bot works in. Empty: every guild it has joined."""
    allowed_channels: list[int] = Field(default_factory=list,
                                        examples=[[123456789012345679]])
    """Channel ids the bot answers in. Empty: every channel it can read."""
    denied_channels: list[int] = Field(default_factory=list,
                                       examples=[[123456789012345680]])
    """Channel ids the bot never answers in."""
    reply_mode: Literal["thread", "inline"] = "thread"
    """"thread": answer in a thread started from the message (one conversation per
    thread); "inline": answer in the channel itself (one conversation per channel)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.enabled and is_blank(self.token):
            return self.raise_problems([missing("token", "discord.enabled = true")])
        return self

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | DiscordConfig) -> DiscordConfig:
        """The model itself, or a plain mapping validated (tests, callers without a config)."""
        if isinstance(config, DiscordConfig):
            return config
        return cls.model_validate(dict(config))

    def token_value(self) -> str:
        return self.token.get_secret_value().strip() if self.token else ""

    def allows_place(self, guild_id: int | None, *channel_ids: int | None) -> bool:
        """Guild allow list, then channel deny / allow lists (a thread counts as its parent)."""
        ids = {c for c in channel_ids if c is not None}
        if guild_id is None:
            return True  # a DM: only the user allowlist applies
        if self.guild_ids and guild_id not in self.guild_ids:
            return False
        if ids & set(self.denied_channels):
            return False
        return not self.allowed_channels or bool(ids & set(self.allowed_channels))


DiscordSettings = DiscordConfig
"""The name the adapter has used for its settings: the same model."""
