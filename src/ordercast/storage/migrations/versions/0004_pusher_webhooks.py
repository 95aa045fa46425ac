"""Pusher server webhooks: outbox rows that belong to no order

A ``pusher`` endpoint's messages (channel_occupied, member_added, client_event, ...) come
from the WebSocket gateway, not from an order change, so ``order_id``, ``event_id`` and
``seq`` become nullable. Order messages keep filling them as before.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = (("order_id", sa.String(40)), ("event_id", sa.String(40)), ("seq", sa.Integer()))


def upgrade() -> None:
    # SQLite cannot drop NOT NULL in place: batch mode copies the table (indexes kept).
    with op.batch_alter_table("webhook_messages") as batch:
        for name, type_ in _COLUMNS:
            batch.alter_column(name, existing_type=type_, nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM webhook_messages WHERE order_id IS NULL")
    with op.batch_alter_table("webhook_messages") as batch:
        for name, type_ in _COLUMNS:
            batch.alter_column(name, existing_type=type_, nullable=False)
