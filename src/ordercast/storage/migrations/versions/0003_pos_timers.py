"""POS flow: durable timers (fire times and callback deadlines)

Revision ID: 0003
Revises: 0002
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
        "timers",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False),
        # fire | price_deadline | commit_deadline | fire_deadline (domain/pos_flow.py)
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("due_at", sa.Float, nullable=False),  # unix seconds
        sa.Column("done", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),  # ran | cancelled
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("order_id", "kind", name="uq_timers_order_kind"),
        sa.Index("ix_timers_due", "done", "due_at"),
    )


def downgrade() -> None:
    op.drop_table("timers")
