"""Answering the CLI's control requests while watching that the CLI is still there.

A permission callback may wait minutes for a person. If the CLI process or the App Server
connection dies meanwhile, nobody will read the answer: the request's signal is set at
once, the callback gets a short grace to tidy up (update its prompt), then it is cancelled
and the turn ends with the transport's usual error result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from lettabot.sdk.permissions import CancelSignal

__all__ = ["HANDLER_GRACE", "unless_lost"]

T = TypeVar("T")

HANDLER_GRACE = 5.0
"""Seconds a callback may take to return after its request was cancelled."""


async def unless_lost(
    call: Callable[[], Awaitable[T]],
    lost: Callable[[], Awaitable[str]],
    signal: CancelSignal | None = None,
    *,
    grace: float = HANDLER_GRACE,
) -> T | None:
    """``await call()``, unless ``lost()`` returns first: then None (the answer is moot)."""
    outcome: list[T] = []
    gone: list[str] = []
    failed: list[Exception] = []

    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            reason = await lost()
            gone.append(reason)
            if signal is not None:
                signal.cancel(reason)
            await anyio.sleep(grace)
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            outcome.append(await call())
        except Exception as exc:  # raised as itself below, not wrapped in a group
            failed.append(exc)
        tg.cancel_scope.cancel()
    if gone or (not outcome and not failed):
        return None
    if failed:
        raise failed[0]
    return outcome[0]
