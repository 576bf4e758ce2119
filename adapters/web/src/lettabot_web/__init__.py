"""lettabot's local web chat: a browser page per conversation, streaming, approval buttons.

The adapter is found through the ``lettabot.adapters`` entry point ``web``
(:func:`create_adapter`, which receives the validated :class:`WebConfig`).
"""

from lettabot_web.adapter import WebAdapter, create_adapter
from lettabot_web.settings import WebConfig, WebSettings, WebSettingsError

__all__ = ["WebAdapter", "WebConfig", "WebSettings", "WebSettingsError", "create_adapter"]
