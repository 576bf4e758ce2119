"""Persistent state of the runtime: routes, dedupe, approvals audit, allow rules.

``open_store(url)`` picks SQLite or PostgreSQL from the URL alone::

    async with open_store("sqlite+aiosqlite:///var/lib/lettabot/lettabot.db") as store:
        await store.set_route("slack:T1:C1:1700000000.1", agent_id, conversation_id)

or ``store = await open_store(url)`` … ``await store.close()``.
"""

from __future__ import annotations

from lettabot.runtime.store.base import (
    AllowRule,
    Approval,
    ApprovalStatus,
    BudgetLift,
    Feedback,
    HeldMessage,
    Route,
    Schedule,
    Store,
    StoreError,
    UsageTotal,
    input_digest,
)
from lettabot.runtime.store.sql import (
    Clock,
    SQLStore,
    StoreOpener,
    default_store_url,
    mask_url,
    normalize_url,
    sqlite_path,
    utcnow,
)

__all__ = [
    "AllowRule",
    "Approval",
    "ApprovalStatus",
    "BudgetLift",
    "Feedback",
    "HeldMessage",
    "Route",
    "SQLStore",
    "Schedule",
    "Store",
    "StoreError",
    "StoreOpener",
    "UsageTotal",
    "default_store_url",
    "input_digest",
    "mask_url",
    "normalize_url",
    "open_store",
    "sqlite_path",
]


def open_store(url: str, *, clock: Clock = utcnow, migrate: bool = True) -> StoreOpener:
    """Open the store at ``url`` (schema created or migrated on open; ``migrate=False``:
    refused unless already current).

    ``sqlite+aiosqlite:///path`` (or ``sqlite:///path``, or a bare path) or
    ``postgresql+asyncpg://user:pw@host:port/db`` (or ``postgresql://…``). Raises
    :class:`StoreError` on an unsupported URL, an unreachable database or a schema newer
    than this version of lettabot. ``clock`` is for tests.
    """
    return StoreOpener(url, clock, migrate)
