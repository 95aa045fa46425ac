"""Outbox changes: order changes whose webhook messages a delivery worker renders
(``ORDERCAST_OUTBOX_RENDER=worker``), one row per committed change, deleted when expanded.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BIGPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox_changes",
        sa.Column("pos", _BIGPK, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox_changes")
