"""Alembic's environment for lettabot's store: always run on a connection lettabot passes
in (``config.attributes["connection"]``; see :mod:`lettabot.runtime.store.migrations`)."""

from __future__ import annotations

from alembic import context

from lettabot.runtime.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="lettabot_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER is limited
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
