"""Held messages: accepted messages waiting for their agent's App Server host.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lettabot_held_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_message_id", sa.String, nullable=False, unique=True),
        sa.Column("scope", sa.String, nullable=False),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lettabot_held_messages_scope", "lettabot_held_messages", ["scope"])


def downgrade() -> None:
    op.drop_index("ix_lettabot_held_messages_scope", "lettabot_held_messages")
    op.drop_table("lettabot_held_messages")
