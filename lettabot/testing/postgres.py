"""A fresh PostgreSQL database for a test or a benchmark (on 127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import asyncpg  # type: ignore[import-untyped]

__all__ = ["ADMIN", "create_database", "drop_database", "fresh_database"]

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def create_database(prefix: str = "lettabot_test", admin: str = ADMIN) -> str:
    """Create a uniquely named database; returns its SQLAlchemy URL (asyncpg driver)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{admin.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://')}/{name}"


async def drop_database(url: str, admin: str = ADMIN) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextmanager
def fresh_database(prefix: str = "lettabot_test") -> Iterator[str]:
    """A new database for the block (call outside an event loop, e.g. in a sync fixture)."""
    url = anyio.run(create_database, prefix)
    try:
        yield url
    finally:
        anyio.run(drop_database, url)
