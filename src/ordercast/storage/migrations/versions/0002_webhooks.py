"""webhooks: endpoints, the outbox of messages, delivery attempts

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(40)
TS = sa.String(32)
BIGPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", ID, primary_key=True),
        sa.Column("app_id", ID, sa.ForeignKey("apps.id"), nullable=False, index=True),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("dialect", sa.String(16), nullable=False),
        sa.Column("event_types", sa.JSON, nullable=True),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("old_secrets", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
        sa.Column("fifo", sa.Boolean, nullable=False),
        sa.Column("max_concurrency", sa.Integer, nullable=False),
        sa.Column("failing_since", sa.Float, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "webhook_messages",
        sa.Column("pos", BIGPK, primary_key=True, autoincrement=True),
        sa.Column("id", ID, nullable=False, unique=True),
        sa.Column("endpoint_id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("wire_type", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("claimed_by", ID, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("event_at", TS, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("endpoint_id", "event_id", "part", name="uq_webhook_messages_event"),
    )
    op.create_index("ix_webhook_messages_due", "webhook_messages", ["status", "next_attempt_at"])
    op.create_index(
        "ix_webhook_messages_order", "webhook_messages", ["endpoint_id", "order_id", "pos"]
    )
    op.create_index(
        "ix_webhook_messages_endpoint_time", "webhook_messages", ["endpoint_id", "event_at"]
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("pos", BIGPK, primary_key=True, autoincrement=True),
        sa.Column("id", ID, nullable=False, unique=True),
        sa.Column("message_id", ID, nullable=False, index=True),
        sa.Column("endpoint_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("webhook_timestamp", sa.BigInteger, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("response_body", sa.Text, nullable=True),
        sa.Column("next_attempt_at", sa.Float, nullable=True),
    )
    op.create_index("ix_webhook_attempts_endpoint", "webhook_attempts", ["endpoint_id", "pos"])


def downgrade() -> None:
    for table in ("webhook_attempts", "webhook_messages", "webhook_endpoints"):
        op.drop_table(table)
