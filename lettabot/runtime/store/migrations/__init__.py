"""The store's schema, migrated with Alembic (revisions in ``versions/``).

:func:`upgrade` runs on the store's connection inside one transaction; PostgreSQL takes an
advisory lock first, so replicas starting at once migrate once. A store written by release
0.1.0 (its own runner kept ``lettabot_schema_version``) is adopted: stamped at the matching
revision, then upgraded. To change the schema, add a revision here (``alembic revision``
with ``script_location`` pointing at this folder) and change :mod:`..schema` to match —
``tests/runtime/test_migrations.py`` fails while they differ. Never edit a released one.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from lettabot.runtime.store.base import StoreError

__all__ = ["VERSION_TABLE", "current", "head", "up_to_date", "upgrade"]

HERE = Path(__file__).parent
VERSION_TABLE = "lettabot_alembic_version"
_LEGACY_TABLE = "lettabot_schema_version"
_LEGACY = {1: "0001", 2: "0002"}
"""Release 0.1.0's schema versions → the revisions that create the same tables."""
_PG_LOCK_KEY = 0x1E77AB07  # arbitrary, constant: "lettabot schema migration"


def _config(conn: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = conn
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this lettabot knows."""
    revision = _scripts().get_current_head()
    assert revision is not None
    return revision


def _legacy_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table(_LEGACY_TABLE):
        return None
    row = conn.execute(text(f"SELECT version FROM {_LEGACY_TABLE} WHERE id = 1")).first()
    return int(row[0]) if row else 0


def current(conn: Connection) -> str | None:
    """The schema revision of the database on ``conn`` (None: no lettabot tables yet)."""
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    revision = context.get_current_revision()
    if revision is None and (legacy := _legacy_version(conn)):
        return _LEGACY.get(legacy, f"0.1.0-v{legacy}")
    return revision


def up_to_date(conn: Connection) -> bool:
    """At :func:`head`, under Alembic (a 0.1.0 store is adopted by :func:`upgrade` first)."""
    return current(conn) == head() and _legacy_version(conn) is None


def _newer(revision: str) -> StoreError:
    return StoreError(
        f"the database schema is at revision {revision}, newer than this lettabot knows "
        f"(its newest is {head()}) — upgrade lettabot, or point store.url at another database")


def upgrade(conn: Connection, *, apply: bool = True) -> str:
    """Bring the schema on ``conn`` to :func:`head` (inside the caller's transaction);
    returns the revision. ``apply=False`` only checks: a schema behind head raises
    :class:`StoreError` saying to run ``lettabot db upgrade``."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    revision = current(conn)
    known = {script.revision for script in _scripts().walk_revisions()}
    if revision is not None and revision not in known:
        raise _newer(revision)
    if revision == head() and _legacy_version(conn) is None:
        return revision
    if not apply:
        raise StoreError(
            f"the database schema is at revision {revision or 'none (empty)'} and this "
            f"lettabot needs {head()} — run `lettabot db upgrade` (store.migrate_on_start "
            "is false)")
    config = _config(conn)
    legacy = _legacy_version(conn)
    if legacy is not None:  # adopt a 0.1.0 store: its version becomes Alembic's revision
        if legacy:
            command.stamp(config, _LEGACY[legacy])
        conn.execute(text(f"DROP TABLE {_LEGACY_TABLE}"))
    command.upgrade(config, "head")
    return head()
