"""core: tenants, locations, apps, orders, events, deliveries, subscriptions

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(40)
TS = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "tenants",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "locations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "apps",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", ID, sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "app_locations",
        sa.Column("app_id", ID, sa.ForeignKey("apps.id"), primary_key=True),
        sa.Column("location_id", ID, sa.ForeignKey("locations.id"), primary_key=True),
    )
    op.create_table(
        "orders",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("location_id", ID, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("external_order_ref", sa.String(128), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("doc", sa.JSON, nullable=False),
    )
    op.create_index("ix_orders_location_updated", "orders", ["location_id", "updated_at"])
    op.create_index("ix_orders_tenant_user", "orders", ["tenant_id", "user_id"])
    op.create_table(
        "events",
        sa.Column("pos", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", ID, nullable=False, unique=True),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("location_id", ID, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("actor", sa.JSON, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.UniqueConstraint("order_id", "seq", name="uq_events_order_seq"),
    )
    op.create_index("ix_events_recorded", "events", ["recorded_at"])
    op.create_table(
        "deliveries",
        sa.Column("id", ID, primary_key=True),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id"), nullable=False, index=True),
    )
    op.create_table(
        "subscriptions",
        sa.Column("order_id", ID, sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("app_id", ID, sa.ForeignKey("apps.id"), primary_key=True),
        sa.Column("implicit", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "subscriptions",
        "deliveries",
        "events",
        "orders",
        "app_locations",
        "apps",
        "locations",
        "tenants",
        "meta",
    ):
        op.drop_table(table)
