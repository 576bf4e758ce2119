"""Feedback people give an answer (👍 / 👎), stored with the turn's conversation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lettabot_feedback",
        sa.Column("scope", sa.String, primary_key=True),
        sa.Column("message_ref", sa.String, primary_key=True),
        sa.Column("user_id", sa.String, primary_key=True),
        sa.Column("rating", sa.String(8), nullable=False),
        sa.Column("conversation_id", sa.String),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lettabot_feedback")
