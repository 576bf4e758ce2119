"""Budgets: each turn's tokens (``lettabot_usage``) and approvers' lifts of a scope's
budgets for a day (``lettabot_budget_lifts``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lettabot_usage",
        sa.Column("turn_id", sa.String, primary_key=True),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("person", sa.String, nullable=False),
        sa.Column("scope", sa.String, nullable=False),
        sa.Column("model", sa.String, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lettabot_usage_day_person", "lettabot_usage", ["day", "person"])
    op.create_index("ix_lettabot_usage_day_scope", "lettabot_usage", ["day", "scope"])
    op.create_table(
        "lettabot_budget_lifts",
        sa.Column("scope", sa.String, primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("tokens", sa.BigInteger),
        sa.Column("lifted_by", sa.String, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lettabot_budget_lifts")
    op.drop_index("ix_lettabot_usage_day_scope", "lettabot_usage")
    op.drop_index("ix_lettabot_usage_day_person", "lettabot_usage")
    op.drop_table("lettabot_usage")
