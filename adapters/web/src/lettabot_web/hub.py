"""What each browser tab shows, and live delivery of changes to the tab's open pages.

A tab's transcript is a list of items (the user's messages, the bot's replies, approval
cards, command results) kept in memory, so a reload of the tab shows its conversation
again. Every change is published to the tab's subscribers (open event streams) as an
event; a subscriber too slow to keep up is dropped and reconnects to a fresh snapshot.
"""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["Event", "Hub", "Item", "ItemKind"]

ItemKind = Literal["user", "bot", "approval", "system"]
Event = dict[str, Any]

MAX_TABS = 256
MAX_ITEMS = 400
_QUEUE = 256


@dataclass
class Item:
    """One thing in a tab's transcript. ``data`` holds kind-specific fields (approvals)."""

    id: str
    kind: ItemKind
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "text": self.text, **self.data}


@dataclass
class _Tab:
    items: OrderedDict[str, Item] = field(default_factory=OrderedDict)
    subscribers: set[MemoryObjectSendStream[Event]] = field(default_factory=set)
    restored: bool = False


class Hub:
    """Transcripts and subscribers of every tab, bounded in tabs and items per tab."""

    def __init__(self, *, max_tabs: int = MAX_TABS, max_items: int = MAX_ITEMS) -> None:
        self._tabs: OrderedDict[str, _Tab] = OrderedDict()
        self._max_tabs = max_tabs
        self._max_items = max_items
        self._ids = itertools.count(1)
        self._run = secrets.token_hex(3)  # ids stay unique across restarts (feedback refs)
        self._approvals: dict[str, tuple[str, str]] = {}  # request id -> (tab, item id)

    # transcript ----------------------------------------------------------------

    def _tab(self, tab: str) -> _Tab:
        state = self._tabs.get(tab)
        if state is None:
            state = self._tabs[tab] = _Tab()
            self._evict()
        self._tabs.move_to_end(tab)
        return state

    def _evict(self) -> None:
        for name in list(self._tabs):
            if len(self._tabs) <= self._max_tabs:
                break
            if not self._tabs[name].subscribers:  # never forget a tab that is open
                self._drop_tab(name)

    def _drop_tab(self, name: str) -> None:
        state = self._tabs.pop(name)
        for item in state.items.values():
            self._approvals.pop(item.data.get("request_id", ""), None)

    def new_id(self) -> str:
        return f"m{self._run}-{next(self._ids)}"

    def add(self, tab: str, kind: ItemKind, text: str, **data: Any) -> Item:
        """Append an item to the tab and publish it."""
        state = self._tab(tab)
        item = Item(self.new_id(), kind, text, dict(data))
        state.items[item.id] = item
        if kind == "approval":
            self._approvals[str(data["request_id"])] = (tab, item.id)
        while len(state.items) > self._max_items:
            _, old = state.items.popitem(last=False)
            self._approvals.pop(old.data.get("request_id", ""), None)
        self._publish(state, {"type": "item", "item": item.to_json()})
        return item

    def update(self, tab: str, item_id: str, text: str | None = None, **data: Any) -> bool:
        """Change an item (new text, new fields) and publish it; False if it is gone."""
        state = self._tabs.get(tab)
        item = state.items.get(item_id) if state else None
        if state is None or item is None:
            return False
        if (text is None or text == item.text) and all(
            item.data.get(k) == v for k, v in data.items()
        ):
            return True  # nothing changed: nothing to send
        if text is not None:
            item.text = text
        item.data.update(data)
        self._publish(state, {"type": "item", "item": item.to_json()})
        return True

    def find(self, tab: str, **match: Any) -> Item | None:
        """The newest item of ``tab`` whose fields include ``match``."""
        state = self._tabs.get(tab)
        for item in reversed(list(state.items.values()) if state else []):
            if all(item.data.get(k) == v for k, v in match.items()):
                return item
        return None

    def get(self, tab: str, item_id: str) -> Item | None:
        state = self._tabs.get(tab)
        return state.items.get(item_id) if state else None

    def has(self, tab: str, item_id: str, **_: Any) -> bool:
        """Whether ``tab`` shows a bot answer ``item_id`` that was offered feedback."""
        state = self._tabs.get(tab)
        item = state.items.get(item_id) if state else None
        return item is not None and item.kind == "bot" and "feedback" in item.data

    def approval(self, request_id: str) -> tuple[str, str] | None:
        """(tab, item id) of the card for an approval request, if it is still shown."""
        return self._approvals.get(request_id)

    def clear(self, tab: str, **event: Any) -> None:
        """Forget the tab's transcript (a reset); subscribers get a ``clear`` event."""
        state = self._tab(tab)
        for item in state.items.values():
            self._approvals.pop(item.data.get("request_id", ""), None)
        state.items.clear()
        self._publish(state, {"type": "clear", **event})

    def signal(self, tab: str, event: Event) -> None:
        """A transient event (typing, a brief notice): published, not kept."""
        self._publish(self._tab(tab), event)

    def needs_restore(self, tab: str) -> bool:
        """True once per tab this process has shown nothing of (after a restart): the
        caller then fills it from the conversation's stored messages."""
        state = self._tab(tab)
        if state.restored or state.items:
            return False
        state.restored = True
        return True

    def restore(self, tab: str,
                entries: list[tuple[ItemKind, str, str | None, dict[str, Any]]]) -> None:
        """Put a conversation's earlier messages at the top of an empty transcript: (kind,
        text, the id to show it under or None for a new one, fields such as ``feedback``)."""
        state = self._tab(tab)
        if state.items:
            return  # something new arrived meanwhile: keep it, do not mix
        for kind, text, item_id, data in entries[-self._max_items:]:
            if item_id is None or item_id in state.items:
                item_id = self.new_id()
            item = Item(item_id, kind, text, {**data, "restored": True})
            state.items[item.id] = item

    def snapshot(self, tab: str) -> list[dict[str, Any]]:
        return [item.to_json() for item in self._tab(tab).items.values()]

    # delivery ------------------------------------------------------------------

    @contextmanager
    def subscribe(self, tab: str) -> Iterator[MemoryObjectReceiveStream[Event]]:
        """Events for ``tab`` from now on, starting with a ``snapshot`` of its transcript."""
        send, receive = anyio.create_memory_object_stream[Event](_QUEUE)
        state = self._tab(tab)
        send.send_nowait({"type": "snapshot", "items": self.snapshot(tab)})
        state.subscribers.add(send)
        try:
            yield receive
        finally:
            state.subscribers.discard(send)
            send.close()
            receive.close()

    def close_all(self) -> None:
        """End every subscription (server shutdown): their streams finish."""
        for state in self._tabs.values():
            for send in list(state.subscribers):
                send.close()
            state.subscribers.clear()

    @staticmethod
    def _publish(state: _Tab, event: Event) -> None:
        for send in list(state.subscribers):
            try:
                send.send_nowait(event)
            except anyio.WouldBlock:
                state.subscribers.discard(send)  # too slow: it reconnects to a snapshot
                send.close()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                state.subscribers.discard(send)
