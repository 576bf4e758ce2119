"""The adapter's settings: the ``[discord]`` section, validated once (by the config loader)
and handed to :func:`~lettabot_discord.create_adapter` as this model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator

from lettabot.runtime.config import ChatAdapterSettings, Problem, is_blank, missing

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
    shard_count: int | None = Field(default=None, ge=1, examples=[4])
    """Split the bot's guilds into this many gateway shards (Discord puts a guild on shard
    ``(guild_id >> 22) % shard_count``; every replica must say the same count). Unset: one
    gateway session and no sharding (below 2,500 guilds)."""
    shard_ids: list[int] = Field(default_factory=list, examples=[[0, 1]])
    """The shards this replica connects (each in ``0 … shard_count - 1``), so replicas
    split the guilds: e.g. ``[0, 1]`` on one replica and ``[2, 3]`` on another with
    ``shard_count = 4``. Empty: all ``shard_count`` shards here. Needs ``shard_count``."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = []
        if self.enabled and is_blank(self.token):
            problems.append(missing("token", "discord.enabled = true"))
        if self.shard_ids and self.shard_count is None:
            problems.append(Problem("shard_ids", "is set without shard_count",
                                    "set discord.shard_count to the total number of shards "
                                    "(the same on every replica)"))
        elif self.shard_count is not None:
            wrong = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
            if wrong:
                problems.append(Problem(
                    "shard_ids", f"{wrong} outside 0 … {self.shard_count - 1}",
                    f"use shard ids from 0 to shard_count - 1 ({self.shard_count - 1})"))
            if len(set(self.shard_ids)) != len(self.shard_ids):
                problems.append(Problem("shard_ids", "repeats a shard id",
                                        "name each shard once"))
        if problems:
            return self.raise_problems(problems)
        return self

    def sharding(self) -> dict[str, Any]:
        """discord.py's options for the configured shards: ``shard_count`` and
        ``shard_ids`` for an :class:`discord.AutoShardedClient`; empty: no sharding."""
        if self.shard_count is None:
            return {}
        return {"shard_count": self.shard_count,
                "shard_ids": list(self.shard_ids) if self.shard_ids else None}

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
