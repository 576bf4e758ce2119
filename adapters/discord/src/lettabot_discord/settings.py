"""The adapter's settings: the runtime's ``[discord]`` section plus the access keys it uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field

from lettabot.runtime.config import DiscordConfig

__all__ = ["DiscordSettings"]


class DiscordSettings(DiscordConfig):
    """``[discord]`` as :class:`DiscordConfig` validates it, plus two access keys.

    ``require_mention`` (from ``[access]``) decides whether a top-level channel message
    without an @mention is passed on; ``allowed_users`` (``discord:<id>`` or bare ids), when
    given, makes the adapter drop other users' messages before they reach the runtime.
    Unknown keys are ignored so the runtime may pass its whole section.
    """

    model_config = ConfigDict(extra="ignore", validate_default=True)

    require_mention: bool = True
    allowed_users: list[str] = Field(default_factory=list)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | DiscordConfig) -> DiscordSettings:
        if isinstance(config, DiscordConfig):
            config = {name: getattr(config, name) for name in type(config).model_fields}
        return cls.model_validate(dict(config))

    def token_value(self) -> str:
        return self.token.get_secret_value().strip() if self.token else ""

    def allows_user(self, user_id: int) -> bool:
        if not self.allowed_users:
            return True
        return any(e in (str(user_id), f"discord:{user_id}") for e in self.allowed_users)

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
