"""lettabot's local web chat: a browser page per conversation, streaming, approval buttons.

The adapter is found through the ``lettabot.adapters`` entry point ``web``.
"""

from lettabot_web.adapter import WebAdapter, create_adapter
from lettabot_web.settings import WebSettings, WebSettingsError

__all__ = ["WebAdapter", "WebSettings", "WebSettingsError", "create_adapter"]
