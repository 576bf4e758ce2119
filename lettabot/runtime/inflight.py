"""Handlers a platform library runs outside lettabot's task group, counted.

discord.py and slack_sdk start a task per event. When lettabot stops, such a handler may
be half-way (opening a thread, looking up a name) with a message it has not yet handed to
the runtime. An adapter counts them, and before it closes its client waits (bounded) for
them to finish: the runtime then answers the message or, draining, says to send it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

__all__ = ["HANDLER_GRACE", "InFlight"]

HANDLER_GRACE = 10.0
"""Seconds an adapter waits at shutdown for handlers still running."""


class InFlight:
    """How many handlers run now; ``idle()`` waits until none does."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = anyio.Event()
        self._idle.set()

    @contextmanager
    def track(self) -> Iterator[None]:
        if self.count == 0:
            self._idle = anyio.Event()
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def idle(self, timeout: float = HANDLER_GRACE) -> bool:  # noqa: ASYNC109
        """Wait until no handler runs (at most ``timeout`` s); True if none does."""
        with anyio.move_on_after(timeout):
            await self._idle.wait()
        return self.count == 0
