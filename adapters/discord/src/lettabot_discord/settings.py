"""The adapter's settings: the runtime's ``[discord]`` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict

from lettabot.runtime.config import DiscordConfig

__all__ = ["DiscordSettings"]


class DiscordSettings(DiscordConfig):
    """``[discord]`` as :class:`DiscordConfig` validates it (unknown keys ignored).

    Who may talk (``access.allowed_users``), whether a mention is needed and the
    ``unauthorized_reply`` are the runtime's access policy; the adapter applies the
    places (guilds, channels) and drops other bots' messages unless ``allow_bots``.
    """

    model_config = ConfigDict(extra="ignore", validate_default=True)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | DiscordConfig) -> DiscordSettings:
        if isinstance(config, DiscordConfig):
            config = {name: getattr(config, name) for name in type(config).model_fields}
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
