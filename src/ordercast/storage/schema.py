"""The relational schema (SQLAlchemy Core). Migrations in ``migrations/`` create it."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

locations = sa.Table(
    "locations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

app_locations = sa.Table(
    "app_locations",
    metadata,
    sa.Column("app_id", sa.String(40), sa.ForeignKey("apps.id"), primary_key=True),
    sa.Column("location_id", sa.String(40), sa.ForeignKey("locations.id"), primary_key=True),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("location_id", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("user_id", sa.String(128), nullable=True),
    sa.Column("external_order_ref", sa.String(128), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
    sa.Index("ix_orders_location_updated", "location_id", "updated_at"),
    sa.Index("ix_orders_tenant_user", "tenant_id", "user_id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("pos", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(40), nullable=False, unique=True),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("location_id", sa.String(40), nullable=False),
    sa.Column("occurred_at", sa.String(32), nullable=False),
    sa.Column("recorded_at", sa.String(32), nullable=False),
    sa.Column("actor", sa.JSON, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.UniqueConstraint("order_id", "seq", name="uq_events_order_seq"),
    sa.Index("ix_events_recorded", "recorded_at"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False, index=True),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), primary_key=True),
    sa.Column("app_id", sa.String(40), sa.ForeignKey("apps.id"), primary_key=True),
    sa.Column("implicit", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)
