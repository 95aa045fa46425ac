"""Doshii-style webhooks: the partner's own authentication, and an optional location

A Doshii partner registers ``POST /partner/v3/webhooks`` with ``authenticationKey`` and/or
``authenticationToken``, which ordercast sends back in the ``Authorization`` header of each
delivery as Doshii does; a webhook registered with a ``doshii-location-id`` hears only that
location's orders. All three columns are NULL for every other endpoint.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("auth_key", sa.String(512)),
    ("auth_token", sa.String(2048)),
    ("location_id", sa.String(40)),
)


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        for name, _type in reversed(_COLUMNS):
            batch.drop_column(name)
