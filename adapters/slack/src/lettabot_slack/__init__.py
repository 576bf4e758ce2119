"""Slack adapter for lettabot (slack-bolt): Socket Mode or HTTP events.

Registered as the ``slack`` entry point in the ``lettabot.adapters`` group
(:func:`create_adapter`, which receives the validated :class:`SlackConfig`).
"""

from lettabot_slack.adapter import SlackAdapter, create_adapter
from lettabot_slack.settings import SlackConfig

__all__ = ["SlackAdapter", "SlackConfig", "create_adapter"]
