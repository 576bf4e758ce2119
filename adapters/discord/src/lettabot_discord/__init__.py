"""lettabot's Discord adapter (discord.py). Entry point: :func:`create_adapter`."""

from lettabot_discord.adapter import (
    PERMISSIONS,
    DiscordAdapter,
    DiscordAdapterError,
    create_adapter,
    intents,
)
from lettabot_discord.settings import DiscordSettings

__all__ = [
    "PERMISSIONS",
    "DiscordAdapter",
    "DiscordAdapterError",
    "DiscordSettings",
    "create_adapter",
    "intents",
]
