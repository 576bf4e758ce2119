"""Scoped, expiring tool rules replace "always allow <tool> here" (which covered any input,
forever): the old rules are dropped, not converted — nobody approved that breadth.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.drop_table("lettabot_allow_rules")
    op.create_table(
        "lettabot_tool_rules",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("scope", sa.String, nullable=False),
        sa.Column("tool_name", sa.String, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pattern", sa.Text, nullable=False),
        sa.Column("created_by", sa.String, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
    )
    op.create_index("ix_lettabot_tool_rules_expires_at", "lettabot_tool_rules", ["expires_at"])
    op.create_index("ix_lettabot_tool_rules_scope_tool", "lettabot_tool_rules",
                    ["scope", "tool_name"])


def downgrade() -> None:
    op.drop_table("lettabot_tool_rules")
    op.create_table(
        "lettabot_allow_rules",
        sa.Column("scope", sa.String, primary_key=True),
        sa.Column("tool_name", sa.String, primary_key=True),
        sa.Column("created_by", sa.String, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
