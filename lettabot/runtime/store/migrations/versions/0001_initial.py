"""The first schema (release 0.1.0's version 1): routes, dedupe ids, approvals audit,
"always allow" rules, settings.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lettabot_routes",
        sa.Column("scope", sa.String, primary_key=True),
        sa.Column("agent_id", sa.String, nullable=False),
        sa.Column("conversation_id", sa.String, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "lettabot_processed_events",
        sa.Column("adapter", sa.String, primary_key=True),
        sa.Column("event_id", sa.String, primary_key=True),
        sa.Column("claimed_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
    )
    op.create_index("ix_lettabot_processed_events_expires_at", "lettabot_processed_events",
                    ["expires_at"])
    op.create_table(
        "lettabot_approvals",
        sa.Column("request_id", sa.String, primary_key=True),
        sa.Column("scope", sa.String, nullable=False),
        sa.Column("conversation_id", sa.String, nullable=False),
        sa.Column("tool_name", sa.String, nullable=False),
        sa.Column("input_digest", sa.String(64), nullable=False),
        sa.Column("input_summary", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String),
        sa.Column("decided_at", _TS),
        sa.Column("reason", sa.Text),
        sa.Column("message_ref", sa.Text),
    )
    op.create_index("ix_lettabot_approvals_status_scope", "lettabot_approvals",
                    ["status", "scope"])
    op.create_table(
        "lettabot_allow_rules",
        sa.Column("scope", sa.String, primary_key=True),
        sa.Column("tool_name", sa.String, primary_key=True),
        sa.Column("created_by", sa.String, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "lettabot_settings",
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("lettabot_settings", "lettabot_allow_rules", "lettabot_approvals",
                  "lettabot_processed_events", "lettabot_routes"):
        op.drop_table(table)
