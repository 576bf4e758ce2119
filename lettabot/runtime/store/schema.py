"""Tables of the SQL store and the migrations that create them.

The schema version lives in ``lettabot_schema_version`` (one row). On open, every
migration above the stored version runs in order inside one transaction; PostgreSQL
takes an advisory lock first so two processes starting at once do not race. To change
the schema, add a function to :data:`MIGRATIONS` — never edit a released one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.types import TypeDecorator

from lettabot.runtime.store.base import StoreError


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

schema_version = Table(
    "lettabot_schema_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

routes = Table(
    "lettabot_routes",
    metadata,
    Column("scope", String, primary_key=True),
    Column("agent_id", String, nullable=False),
    Column("conversation_id", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

processed_events = Table(
    "lettabot_processed_events",
    metadata,
    Column("adapter", String, primary_key=True),
    Column("event_id", String, primary_key=True),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

approvals = Table(
    "lettabot_approvals",
    metadata,
    Column("request_id", String, primary_key=True),
    Column("scope", String, nullable=False),
    Column("conversation_id", String, nullable=False),
    Column("tool_name", String, nullable=False),
    Column("input_digest", String(64), nullable=False),
    Column("input_summary", Text, nullable=False),
    Column("requested_by", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("decided_by", String),
    Column("decided_at", UTCDateTime),
    Column("reason", Text),
    Column("message_ref", Text),
    Index("ix_lettabot_approvals_status_scope", "status", "scope"),
)

allow_rules = Table(
    "lettabot_allow_rules",
    metadata,
    Column("scope", String, primary_key=True),
    Column("tool_name", String, primary_key=True),
    Column("created_by", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

tool_rules = Table(
    "lettabot_tool_rules",
    metadata,
    Column("id", String, primary_key=True),
    Column("scope", String, nullable=False),
    Column("tool_name", String, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("pattern", Text, nullable=False),
    Column("created_by", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    Index("ix_lettabot_tool_rules_scope_tool", "scope", "tool_name"),
)

settings = Table(
    "lettabot_settings",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

_V1_TABLES = [routes, processed_events, approvals, allow_rules, settings]


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=_V1_TABLES)


def _v2(conn: Connection) -> None:
    """Scoped, expiring rules replace "always allow <tool> here" (which covered any input,
    forever): the old rules are dropped, not converted — nobody approved that breadth."""
    allow_rules.drop(conn, checkfirst=True)
    metadata.create_all(conn, tables=[tool_rules])


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2]
"""``MIGRATIONS[i]`` brings the schema from version ``i`` to ``i + 1``."""

LATEST_VERSION = len(MIGRATIONS)

_PG_LOCK_KEY = 0x1E77AB07  # arbitrary, constant: "lettabot schema migration"


def migrate(conn: Connection) -> int:
    """Create or upgrade the schema on ``conn`` (inside a transaction); returns the version."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    metadata.create_all(conn, tables=[schema_version])
    current = conn.execute(select(schema_version.c.version).where(schema_version.c.id == 1))
    version = current.scalar_one_or_none()
    if version is None:
        conn.execute(schema_version.insert().values(id=1, version=0))
        version = 0
    if version > LATEST_VERSION:
        raise StoreError(
            f"the database schema is version {version}, newer than this lettabot knows "
            f"({LATEST_VERSION}) — upgrade lettabot or point store.url at another database"
        )
    for step in range(version, LATEST_VERSION):
        MIGRATIONS[step](conn)
    if version != LATEST_VERSION:
        conn.execute(
            schema_version.update().where(schema_version.c.id == 1).values(version=LATEST_VERSION)
        )
    return LATEST_VERSION
