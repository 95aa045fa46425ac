"""Read-only queries for the operator console (``/dashboard``): nothing here writes.

Callers decide visibility (``domain.access``) and pass the tenant, app or endpoint ids a
principal may see; these functions only read those.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ordercast.storage import schema as s
from ordercast.storage.sql import SqlStore

#: Attempts newer than this count towards an endpoint's failure rate.
FAILURE_WINDOW_SECONDS = 24 * 3600


async def locations(
    store: SqlStore, *, tenant_id: str | None = None, ids: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Locations with their tenant's name (every tenant's when ``tenant_id`` is None)."""
    loc, ten = s.locations, s.tenants
    q = sa.select(
        loc.c.id, loc.c.name, loc.c.tenant_id, loc.c.timezone, ten.c.name.label("tenant_name")
    ).select_from(loc.join(ten, ten.c.id == loc.c.tenant_id))
    if tenant_id is not None:
        q = q.where(loc.c.tenant_id == tenant_id)
    if ids is not None:
        q = q.where(loc.c.id.in_(list(ids)))
    q = q.order_by(ten.c.name, loc.c.name).limit(1000)
    async with store.engine.connect() as conn:
        return [dict(r._mapping) for r in (await conn.execute(q)).all()]


async def apps(store: SqlStore, ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """App id -> {name, kind, tenant_id} (never the secret)."""
    q = sa.select(s.apps.c.id, s.apps.c.name, s.apps.c.kind, s.apps.c.tenant_id)
    if ids is not None:
        q = q.where(s.apps.c.id.in_(list(ids)))
    async with store.engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in (await conn.execute(q.limit(5000))).all()}


async def endpoints(
    store: SqlStore, *, app_id: str | None = None, tenant_id: str | None = None
) -> list[dict[str, Any]]:
    """Endpoint rows of one app, one tenant, or all, with their message counts by status,
    attempts and failures in the last day, and the last attempt's time."""
    e, m, a = s.webhook_endpoints, s.webhook_messages, s.webhook_attempts
    q = sa.select(e)
    if app_id is not None:
        q = q.where(e.c.app_id == app_id)
    if tenant_id is not None:
        q = q.where(e.c.tenant_id == tenant_id)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - FAILURE_WINDOW_SECONDS))
    async with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in (await conn.execute(q.order_by(e.c.created_at))).all()]
        ids = [r["id"] for r in rows]
        if not ids:
            return []
        counts = (
            await conn.execute(
                sa.select(m.c.endpoint_id, m.c.status, sa.func.count())
                .where(m.c.endpoint_id.in_(ids))
                .group_by(m.c.endpoint_id, m.c.status)
            )
        ).all()
        recent = (
            await conn.execute(
                sa.select(a.c.endpoint_id, a.c.outcome, sa.func.count(), sa.func.max(a.c.at))
                .where(a.c.endpoint_id.in_(ids), a.c.at >= since)
                .group_by(a.c.endpoint_id, a.c.outcome)
            )
        ).all()
    for row in rows:
        row["messages"] = {}
        row["attempts_24h"] = 0
        row["failed_24h"] = 0
        row["last_attempt_at"] = None
    by_id = {r["id"]: r for r in rows}
    for eid, status, n in counts:
        by_id[eid]["messages"][status] = int(n)
    for eid, outcome, n, last in recent:
        row = by_id[eid]
        row["attempts_24h"] += int(n)
        if outcome != "delivered":
            row["failed_24h"] += int(n)
        if last is not None and (row["last_attempt_at"] is None or last > row["last_attempt_at"]):
            row["last_attempt_at"] = last
    return rows


async def order_webhooks(
    store: SqlStore, order_id: str, endpoint_ids: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An order's webhook messages on these endpoints and every attempt of them."""
    if not endpoint_ids:
        return [], []
    m, a = s.webhook_messages, s.webhook_attempts
    q = (
        sa.select(
            m.c.id,
            m.c.endpoint_id,
            m.c.event_id,
            m.c.seq,
            m.c.event_type,
            m.c.wire_type,
            m.c.status,
            m.c.attempts,
            m.c.last_error,
            m.c.trigger,
        )
        .where(m.c.endpoint_id.in_(list(endpoint_ids)), m.c.order_id == order_id)
        .order_by(m.c.pos)
        .limit(2000)
    )
    async with store.engine.connect() as conn:
        messages = [dict(r._mapping) for r in (await conn.execute(q)).all()]
        ids = [msg["id"] for msg in messages]
        attempts: list[dict[str, Any]] = []
        if ids:
            attempts = [
                dict(r._mapping)
                for r in (
                    await conn.execute(
                        sa.select(
                            a.c.message_id,
                            a.c.attempt,
                            a.c.trigger,
                            a.c.at,
                            a.c.status_code,
                            a.c.outcome,
                            a.c.reason,
                            a.c.latency_ms,
                        )
                        .where(a.c.message_id.in_(ids))
                        .order_by(a.c.pos)
                    )
                ).all()
            ]
    return messages, attempts
