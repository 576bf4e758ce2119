"""What the Slack adapter remembers between events: bounded maps, oldest forgotten first."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MEMORY", "Lru", "Memory"]

MEMORY = 2000
"""Entries each map keeps (scopes, messages): a busy workspace forgets the oldest."""


class Lru(OrderedDict[str, Any]):
    """An ordered map that keeps the :data:`MEMORY` most recently remembered entries."""

    def remember(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > MEMORY:
            self.popitem(last=False)


@dataclass
class Memory:
    """Everything the adapter keeps about messages it saw or posted."""

    seen: Lru = field(default_factory=Lru)
    """Event ids already handled (Slack redelivers)."""
    names: Lru = field(default_factory=Lru)
    """user id → display name."""
    last_inbound: Lru = field(default_factory=Lru)
    """scope key → (channel, ts) of its newest message."""
    parts: Lru = field(default_factory=Lru)
    """"channel:ts" → ts of the extra messages of a long post."""
    texts: Lru = field(default_factory=Lru)
    """ts → the mrkdwn it shows (for the feedback update)."""
    streamed: Lru = field(default_factory=Lru)
    """ts → the markdown it shows (streamed, or a block)."""
    rated: Lru = field(default_factory=Lru)
    """ts of an answer offered feedback → its scope."""
    titled: Lru = field(default_factory=Lru)
    """Assistant threads given a title."""
    working: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    """scope key → messages whose turn runs (⏳ shown)."""
    acked: dict[str, deque[tuple[str, str]]] = field(default_factory=dict)
    """scope key → messages waiting for their turn (👀 shown)."""
