"""Slack adapter for lettabot (slack-bolt): Socket Mode or HTTP events.

Registered as the ``slack`` entry point in the ``lettabot.adapters`` group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lettabot.runtime.adapter import BotAPI
from lettabot_slack.adapter import SlackAdapter, settings_from

__all__ = ["SlackAdapter", "create_adapter"]


def create_adapter(config: Mapping[str, Any], bot: BotAPI) -> SlackAdapter:
    """The :class:`~lettabot.runtime.adapter.AdapterFactory`: ``[slack]`` settings + the bot."""
    return SlackAdapter(settings_from(config), bot)
