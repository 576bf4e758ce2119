"""Tables of the SQL store, as the queries see them.

The migrations in :mod:`lettabot.runtime.store.migrations` create them; a change here
needs a new revision there (a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator


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

feedback = Table(
    "lettabot_feedback",
    metadata,
    Column("scope", String, primary_key=True),
    Column("message_ref", String, primary_key=True),
    Column("user_id", String, primary_key=True),
    Column("rating", String(8), nullable=False),
    Column("conversation_id", String),
    Column("created_at", UTCDateTime, nullable=False),
)


schedules = Table(
    "lettabot_schedules",
    metadata,
    Column("id", String, primary_key=True),
    Column("scope", String, nullable=False, index=True),
    Column("prompt", Text, nullable=False),
    Column("cron", String),
    Column("timezone", String, nullable=False),
    Column("next_run", UTCDateTime, index=True),
    Column("created_by", String, nullable=False),
    Column("source", String(8), nullable=False),
    Column("name", String),
    Column("runs", Integer, nullable=False),
    Column("last_run", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
)

held_messages = Table(
    "lettabot_held_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_message_id", String, nullable=False, unique=True),
    Column("scope", String, nullable=False, index=True),
    Column("host", String, nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

cluster_keys = Table(
    "lettabot_cluster_keys",
    metadata,
    Column("name", String, primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

usage = Table(
    "lettabot_usage",
    metadata,
    Column("turn_id", String, primary_key=True),
    Column("day", String(10), nullable=False),
    Column("person", String, nullable=False),
    Column("scope", String, nullable=False),
    Column("model", String, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_lettabot_usage_day_person", "day", "person"),
    Index("ix_lettabot_usage_day_scope", "day", "scope"),
)
"""Tokens each turn used, one row per turn (its ``client_message_id``): a turn recorded
twice (a retry, a takeover) counts once; budgets are sums over a day's rows."""

budget_lifts = Table(
    "lettabot_budget_lifts",
    metadata,
    Column("scope", String, primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("tokens", BigInteger),
    Column("lifted_by", String, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
"""An approver's lift of a scope's budgets for one day: ``tokens`` more, or NULL (none)."""
