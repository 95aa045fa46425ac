"""Webhook targets revision: a counter the database bumps whenever what decides an order's
webhook endpoints changes (an endpoint's app, dialect, event types, enabled flag or
location; an app's tenant or kind; an app's granted locations), so each process may keep
the endpoints of a location between changes and still see every such change at the next
order write, whoever made it (another node, the CLI, plain SQL): triggers, not code paths.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NAME = "webhook_targets"
_BUMP = f"UPDATE revisions SET value = value + 1 WHERE name = '{NAME}'"

# (trigger, table, event): the columns are those storage/sql's endpoints_for_location reads.
_WATCHED = (
    ("endpoints_insert", "webhook_endpoints", "INSERT"),
    ("endpoints_delete", "webhook_endpoints", "DELETE"),
    (
        "endpoints_update",
        "webhook_endpoints",
        "UPDATE OF id, app_id, dialect, event_types, enabled, location_id",
    ),
    ("app_locations_insert", "app_locations", "INSERT"),
    ("app_locations_delete", "app_locations", "DELETE"),
    ("app_locations_update", "app_locations", "UPDATE"),
    ("apps_delete", "apps", "DELETE"),
    ("apps_update", "apps", "UPDATE OF id, tenant_id, kind"),
)


def upgrade() -> None:
    op.create_table(
        "revisions",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.execute(f"INSERT INTO revisions (name, value) VALUES ('{NAME}', 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ordercast_bump_webhook_targets() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {_BUMP}; RETURN NULL; END $$"
        )
        for table, events in (
            (
                "webhook_endpoints",
                "INSERT OR DELETE OR TRUNCATE OR UPDATE OF id, app_id, dialect, event_types, "
                "enabled, location_id",
            ),
            ("app_locations", "INSERT OR DELETE OR TRUNCATE OR UPDATE"),
            ("apps", "DELETE OR TRUNCATE OR UPDATE OF id, tenant_id, kind"),
        ):
            op.execute(
                f"CREATE TRIGGER {table}_webhook_targets AFTER {events} ON {table} "
                "FOR EACH STATEMENT EXECUTE PROCEDURE ordercast_bump_webhook_targets()"
            )
        return
    for name, table, event in _WATCHED:
        op.execute(
            f"CREATE TRIGGER webhook_targets_{name} AFTER {event} ON {table} BEGIN {_BUMP}; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("webhook_endpoints", "app_locations", "apps"):
            op.execute(f"DROP TRIGGER {table}_webhook_targets ON {table}")
        op.execute("DROP FUNCTION ordercast_bump_webhook_targets()")
    else:
        for name, _table, _event in _WATCHED:
            op.execute(f"DROP TRIGGER webhook_targets_{name}")
    op.drop_table("revisions")
