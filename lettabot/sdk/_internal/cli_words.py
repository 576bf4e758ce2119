"""The one place that reads the CLI's words.

Some failures reach the SDK only as text: the CLI's stderr before it exits, an App Server
``error`` string, a result's error message. Every test on such text is here, and turns it
into something typed (an error class, an ``error_code``); nothing else in the SDK (or
above it) matches substrings of error messages. The patterns are the CLI's own (letta
0.34.12: ``isConversationBusyErrorText``, ``CONVERSATION_BUSY_DETAIL_FRAGMENTS`` and the local
backend's ``already has an active run``).
"""

from __future__ import annotations

import re

from lettabot.sdk.errors import AgentNotFoundError, ConversationNotFoundError
from lettabot.sdk.types import CONVERSATION_BUSY

__all__ = ["failure_code", "is_conversation_busy", "not_found_error"]

_BUSY = re.compile(
    "|".join((
        r"already has an active run",  # the local backend
        r"busy with another active run",  # the cloud backend
        r"is currently being processed",
        r"another request is (?:currently )?(?:being )?processed",
        r"already processing for this conversation",
    )),
    re.IGNORECASE,
)

_CONVERSATION_NOT_FOUND = re.compile(r"\bconversation '?([\w.:-]+)'? not found", re.IGNORECASE)
_AGENT_NOT_FOUND = re.compile(r"\bagent '?([\w.:-]+)'? not found", re.IGNORECASE)


def is_conversation_busy(text: str | None) -> bool:
    """Whether ``text`` says the conversation already has an active run."""
    return bool(text) and _BUSY.search(text or "") is not None


def failure_code(error: str | None, fallback: str | None) -> str | None:
    """The ``error_code`` of a failed turn whose error text is ``error``."""
    return CONVERSATION_BUSY if is_conversation_busy(error) else fallback


def not_found_error(text: str, *, message: str | None = None) -> ConversationNotFoundError | None:
    """The typed error for "Conversation X not found" / "Agent X not found" in ``text``
    (``message``: the error's text, default ``text``); None if it says neither."""
    if match := _CONVERSATION_NOT_FOUND.search(text):
        return ConversationNotFoundError(message or text, conversation_id=match.group(1))
    if match := _AGENT_NOT_FOUND.search(text):
        return AgentNotFoundError(message or text, agent_id=match.group(1))
    return None
