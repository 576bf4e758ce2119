"""A scope's conversation as people saw it: what they wrote and what the agent answered,
read back from the conversation's stored messages (so a page can show it after a restart).

The user messages lettabot sends carry its own notes (who is speaking, a thread's earlier
messages, the CLI's reminders); they are removed, leaving what the person typed.
"""

from __future__ import annotations

import re
from typing import Any

from lettabot.runtime.adapter import HistoryEntry

__all__ = ["entries_from"]

_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)
_CONTEXT_HEAD = "Earlier in this thread, before you were asked"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content
                 if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(p for p in parts if isinstance(p, str)
                         and not p.startswith(_CONTEXT_HEAD))
    return ""


def entries_from(messages: list[dict[str, Any]]) -> list[HistoryEntry]:
    """Letta message dicts (oldest first) → what a chat shows: user and assistant text."""
    out: list[HistoryEntry] = []
    for message in messages:
        kind = message.get("message_type")
        if kind == "user_message":
            text = _REMINDER.sub("", _text(message.get("content"))).strip()
            if text:
                out.append(HistoryEntry(role="user", text=text))
        elif kind == "assistant_message":
            text = _text(message.get("content")).strip()
            if text:
                out.append(HistoryEntry(role="assistant", text=text))
    return out
