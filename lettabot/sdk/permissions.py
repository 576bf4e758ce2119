"""What a ``can_use_tool`` callback receives as its third argument.

A callback that waits for a person (an Approve button in a chat) can outlive the process
that asked: the CLI or its App Server may die, or the connection to a remote server may
drop. ``request.signal`` says so at once, so the callback can tell the person instead of
waiting for a click whose answer nobody would read. The SDK then gives the callback a
short grace to return and cancels it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = ["CanUseToolRequest", "CancelSignal"]


class CancelSignal:
    """Set when the answer to a request can no longer be delivered."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    async def wait(self) -> str:
        """Wait until cancelled; returns the reason."""
        await self._event.wait()
        return self.reason or "cancelled"


@dataclass(frozen=True)
class CanUseToolRequest:
    """One permission request from the CLI."""

    tool_name: str
    tool_input: dict[str, Any]
    tool_call_id: str
    request_id: str
    diffs: list[Any] | None = None
    permission_suggestions: list[Any] = field(default_factory=list)
    """What the CLI offers to remember if allowed (App Server: ``[{"id": "save-default",
    "text": "..."}]``); name them in ``PermissionAllow(updated_permissions=[...])``."""
    blocked_path: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    signal: CancelSignal = field(default_factory=CancelSignal, compare=False)
