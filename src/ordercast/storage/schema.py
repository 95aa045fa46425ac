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

# -- webhooks (migration 0002) -------------------------------------------------------

# Integer on SQLite (so it aliases the rowid and autoincrements), BIGINT elsewhere.
_BIGPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("app_id", sa.String(40), sa.ForeignKey("apps.id"), nullable=False, index=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("dialect", sa.String(16), nullable=False),
    sa.Column("event_types", sa.JSON, nullable=True),  # None = every event
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("secret", sa.String(128), nullable=False),
    # Rotated-out secrets still signing: [{"secret": "whsec_…", "expires_at": unix seconds}]
    sa.Column("old_secrets", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.String(500), nullable=True),
    sa.Column("fifo", sa.Boolean, nullable=False),
    sa.Column("max_concurrency", sa.Integer, nullable=False),
    sa.Column("failing_since", sa.Float, nullable=True),  # unix seconds; None after a success
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    # Doshii webhooks (migration 0005): the partner's authenticationKey / authenticationToken,
    # sent back in ``Authorization``; and the one location it hears (None: all it may see).
    sa.Column("auth_key", sa.String(512), nullable=True),
    sa.Column("auth_token", sa.String(2048), nullable=True),
    sa.Column("location_id", sa.String(40), nullable=True),
)

# Counters the database bumps itself (migration 0007: triggers). ``webhook_targets``: any
# change to what decides a location's webhook endpoints (see storage/outbox.py's targets).
revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# Order changes whose webhook messages a delivery worker renders (ORDERCAST_OUTBOX_RENDER=
# worker): the order as committed and the change's events, written in the order's
# transaction; a worker turns each into its ``webhook_messages`` rows and deletes it in one
# transaction, in ``pos`` order (storage/outbox.py, ``SqlOutbox.expand``).
outbox_changes = sa.Table(
    "outbox_changes",
    metadata,
    sa.Column("pos", _BIGPK, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(40), nullable=False),
    sa.Column("doc", sa.Text, nullable=False),  # Order.as_dict() as JSON
    sa.Column("events", sa.Text, nullable=False),  # [EventRecord.to_dict()] as JSON
    sa.Column("created_at", sa.Float, nullable=False),
)

# The outbox: one row per wire message per endpoint, written in the order's transaction.
# ``id`` is the Standard Webhooks ``webhook-id`` (stable across retries and replays).
webhook_messages = sa.Table(
    "webhook_messages",
    metadata,
    sa.Column("pos", _BIGPK, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("endpoint_id", sa.String(40), nullable=False),
    # NULL for messages that belong to no order (Pusher server webhooks; migration 0004).
    sa.Column("order_id", sa.String(40), nullable=True),
    sa.Column("event_id", sa.String(40), nullable=True),
    sa.Column("part", sa.Integer, nullable=False),  # index among the event's wire messages
    sa.Column("seq", sa.Integer, nullable=True),
    sa.Column("event_type", sa.String(64), nullable=False),  # canonical
    sa.Column("wire_type", sa.String(64), nullable=False),  # the dialect's name for it
    sa.Column("body", sa.Text, nullable=False),  # the exact JSON bytes sent (UTF-8)
    # pending | delivering | delivered | failed (dead letter) | skipped (endpoint disabled)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("claimed_by", sa.String(40), nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("trigger", sa.String(16), nullable=False),  # scheduled | replay
    sa.Column("event_at", sa.String(32), nullable=False),  # the event's recorded_at
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("endpoint_id", "event_id", "part", name="uq_webhook_messages_event"),
    sa.Index("ix_webhook_messages_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_messages_order", "endpoint_id", "order_id", "pos"),
    sa.Index("ix_webhook_messages_endpoint_time", "endpoint_id", "event_at"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("pos", _BIGPK, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("message_id", sa.String(40), nullable=False, index=True),
    sa.Column("endpoint_id", sa.String(40), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),  # scheduled | replay
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("webhook_timestamp", sa.BigInteger, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),  # delivered | failed
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("response_body", sa.Text, nullable=True),  # first 20 KB
    sa.Column("next_attempt_at", sa.Float, nullable=True),
    sa.Index("ix_webhook_attempts_endpoint", "endpoint_id", "pos"),
)

# -- POS flow timers (migration 0003) ------------------------------------------------

# Durable timers of the POS flow (domain/pos_flow.py): a held order's fire time and the
# callback deadlines. Written in the order's own transaction; ``done`` once run or cancelled.
timers = sa.Table(
    "timers",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("order_id", sa.String(40), sa.ForeignKey("orders.id"), nullable=False),
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

# -- accounts (migration 0006) --------------------------------------------------------

# Users who log in with a password (OAuth2 password grant): staff, KDS and customers of a
# tenant. ``roles`` and ``location_ids`` are JSON lists; the password is an argon2 hash.
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("location_ids", sa.JSON, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("tenant_id", "username", name="uq_accounts_tenant_username"),
)
