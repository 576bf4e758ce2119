"""Schedules: prompts the bot runs later in a scope (once, or on a cron schedule).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lettabot_schedules",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("scope", sa.String, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("cron", sa.String),
        sa.Column("timezone", sa.String, nullable=False),
        sa.Column("next_run", sa.DateTime(timezone=True)),
        sa.Column("created_by", sa.String, nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("name", sa.String),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("last_run", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lettabot_schedules_scope", "lettabot_schedules", ["scope"])
    op.create_index("ix_lettabot_schedules_next_run", "lettabot_schedules", ["next_run"])


def downgrade() -> None:
    op.drop_table("lettabot_schedules")
