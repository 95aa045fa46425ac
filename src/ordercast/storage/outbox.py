"""SQL for webhook delivery: endpoints, the outbox of messages and the attempts log.

The outbox rows are inserted by :func:`insert_messages` on the connection of the order's
own write transaction (the store's transaction hook, synchronous: see ``ports.TxHook``), so
an order change and its webhook messages commit or roll back together.

Claiming: a worker takes due ``pending`` rows and marks them ``delivering`` with a lease
and its id, in one short transaction — ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so many
workers share the table; on SQLite the store's single-writer lock serialises claims. No lock
is held during the HTTP call. Outcomes are written in batches, fenced by ``claimed_by`` so
a worker whose lease expired cannot overwrite the row's new owner. Leases are renewed while
a worker lives; a crashed worker's claims expire and :meth:`SqlOutbox.reap` makes them due
again. FIFO endpoints only ever expose the oldest undelivered message of each order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ordercast.storage import fastsql
from ordercast.storage import schema as s
from ordercast.storage.sql import SqlStore

E = s.webhook_endpoints
M = s.webhook_messages
A = s.webhook_attempts

OPEN_STATUSES = ("pending", "delivering")


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed message with what the worker needs to send it."""

    id: str
    endpoint_id: str
    order_id: str | None  # None: not about an order (Pusher server webhooks)
    event_id: str | None
    seq: int | None
    wire_type: str
    body: bytes
    attempts: int
    trigger: str
    url: str
    secret: str
    old_secrets: list[dict[str, Any]]
    failing_since: float | None
    max_concurrency: int
    dialect: str  # "pusher" adds X-Pusher-Key / X-Pusher-Signature (the app's key, secret)
    app_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt, ready to record."""

    message_id: str
    endpoint_id: str
    attempt_id: str
    attempt: int
    trigger: str
    url: str
    at: str
    webhook_timestamp: int
    status_code: int | None
    delivered: bool
    reason: str
    latency_ms: float
    response_body: str | None
    # What becomes of the message: pending (retry at next_attempt_at), delivered, failed.
    message_status: str
    next_attempt_at: float | None
    disable_endpoint: str | None  # reason, when the endpoint must be disabled
    now: float


# The enqueue side runs in every order write: statements built once, with bind params.
_ENDPOINTS_FOR_LOCATION = (
    sa.select(
        E.c.id,
        E.c.app_id,
        E.c.dialect,
        E.c.event_types,
        E.c.enabled,
        s.apps.c.kind,
    )
    .select_from(
        E.join(s.apps, s.apps.c.id == E.c.app_id).join(
            s.app_locations, s.app_locations.c.app_id == E.c.app_id
        )
    )
    .where(
        s.app_locations.c.location_id == sa.bindparam("b_location"),
        s.apps.c.tenant_id == sa.bindparam("b_tenant"),
    )
    .order_by(E.c.id)
)
_SUBSCRIBERS = sa.select(s.subscriptions.c.app_id).where(
    s.subscriptions.c.order_id == sa.bindparam("b_order")
)
_INSERT_MESSAGES = M.insert().inline()


def endpoints_for_location(conn: sa.Connection, tenant_id: str, location_id: str) -> list[Any]:
    """Endpoints of the apps that may see orders at ``location_id`` (with the app's kind)."""
    params = {"b_location": location_id, "b_tenant": tenant_id}
    return fastsql.execute(conn, _ENDPOINTS_FOR_LOCATION, params).rows


def subscribers(conn: sa.Connection, order_id: str) -> set[str]:
    return set(fastsql.execute(conn, _SUBSCRIBERS, {"b_order": order_id}).scalars())


def insert_messages(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    fastsql.execute_many(conn, _INSERT_MESSAGES, rows)


def _endpoint_dict(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    d["event_types"] = list(d["event_types"]) if d["event_types"] is not None else None
    d["old_secrets"] = list(d["old_secrets"] or [])
    return d


async def _asyncpg(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a pooled SQLAlchemy connection (no transaction begun:
    each statement commits on its own, and the pool's reset on return is a no-op)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def _json_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return list(value or [])


# FIFO endpoints only expose the head of each order's open queue. Per endpoint, at most
# depth * max_concurrency - held rows are taken ($6/$7: what the worker already holds).
_PG_CLAIM = """
WITH cand AS (
    SELECT m.pos, m.endpoint_id, m.next_attempt_at
    FROM webhook_messages m JOIN webhook_endpoints e ON e.id = m.endpoint_id
    WHERE m.status = 'pending' AND m.next_attempt_at <= $1 AND e.enabled
      AND NOT (m.endpoint_id = ANY($4::varchar[]))
      AND (NOT e.fifo OR NOT EXISTS (
          SELECT 1 FROM webhook_messages p
          WHERE p.endpoint_id = m.endpoint_id AND p.order_id = m.order_id
            AND p.pos < m.pos AND p.status IN ('pending', 'delivering')))
    ORDER BY m.next_attempt_at, m.pos
    LIMIT $5
    FOR UPDATE OF m SKIP LOCKED
), held AS (
    SELECT * FROM unnest($6::varchar[], $7::int[]) AS h(endpoint_id, n)
), ranked AS (
    SELECT c.pos,
           row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.pos)
               AS rn,
           e.max_concurrency * $8::int - coalesce(h.n, 0) AS room
    FROM cand c
    JOIN webhook_endpoints e ON e.id = c.endpoint_id
    LEFT JOIN held h ON h.endpoint_id = c.endpoint_id
)
UPDATE webhook_messages m
SET status = 'delivering', claimed_by = $2, lease_until = $3, updated_at = $1
FROM ranked k, webhook_endpoints e
WHERE m.pos = k.pos AND k.rn <= k.room AND e.id = m.endpoint_id
RETURNING m.pos, m.id, m.endpoint_id, m.order_id, m.event_id, m.seq, m.wire_type, m.body,
          m.attempts, m.trigger, m.next_attempt_at, e.url, e.secret, e.old_secrets,
          e.failing_since, e.max_concurrency, e.dialect, e.app_id
"""

_ATTEMPT_COLUMNS = (
    "id",
    "message_id",
    "endpoint_id",
    "attempt",
    "trigger",
    "url",
    "at",
    "webhook_timestamp",
    "status_code",
    "outcome",
    "reason",
    "latency_ms",
    "response_body",
    "next_attempt_at",
)

# Message rows are fenced by claimed_by ($1): a worker whose lease expired cannot overwrite
# the row's new owner. Data-modifying CTEs run whether or not they are referenced.
_PG_RECORD = """
WITH o AS (
    SELECT * FROM unnest($2::varchar[], $3::varchar[], $4::int[], $5::float8[],
                         $6::varchar[], $7::float8[])
        AS o(id, status, attempts, next_at, err, now)
), upd AS (
    UPDATE webhook_messages m
    SET status = o.status, attempts = o.attempts, next_attempt_at = o.next_at,
        last_error = o.err, updated_at = o.now, claimed_by = NULL, lease_until = NULL
    FROM o WHERE m.id = o.id AND m.claimed_by = $1
    RETURNING m.pos
), ok AS (
    UPDATE webhook_endpoints SET failing_since = NULL
    WHERE id = ANY($8::varchar[]) AND failing_since IS NOT NULL
    RETURNING id
)
INSERT INTO webhook_attempts (id, message_id, endpoint_id, attempt, trigger, url, at,
                              webhook_timestamp, status_code, outcome, reason, latency_ms,
                              response_body, next_attempt_at)
SELECT * FROM unnest($9::varchar[], $10::varchar[], $11::varchar[], $12::int[],
                     $13::varchar[], $14::varchar[], $15::varchar[], $16::bigint[],
                     $17::int[], $18::varchar[], $19::varchar[], $20::float8[], $21::text[],
                     $22::float8[])
"""


class SqlOutbox:
    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.engine = store.engine
        self.is_sqlite = store.is_sqlite

    # -- endpoints -------------------------------------------------------------------

    async def create_endpoint(self, values: dict[str, Any]) -> None:
        async with self.store.write() as conn:
            await conn.execute(E.insert().values(**values))

    async def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(E).where(E.c.id == endpoint_id))).first()
        return _endpoint_dict(row) if row is not None else None

    async def list_endpoints(self, app_id: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(E).order_by(E.c.created_at, E.c.id)
        if app_id is not None:
            q = q.where(E.c.app_id == app_id)
        async with self.engine.connect() as conn:
            return [_endpoint_dict(r) for r in (await conn.execute(q)).all()]

    async def update_endpoint(self, endpoint_id: str, values: dict[str, Any]) -> None:
        async with self.store.write() as conn:
            await conn.execute(E.update().where(E.c.id == endpoint_id).values(**values))

    async def delete_endpoint(self, endpoint_id: str) -> None:
        async with self.store.write() as conn:
            await conn.execute(A.delete().where(A.c.endpoint_id == endpoint_id))
            await conn.execute(M.delete().where(M.c.endpoint_id == endpoint_id))
            await conn.execute(E.delete().where(E.c.id == endpoint_id))

    # -- messages that belong to no order (Pusher server webhooks) ------------------------

    async def endpoints_of_apps(self, app_ids: Sequence[str], dialect: str) -> list[Any]:
        """``id, app_id, event_types, enabled`` of these apps' endpoints in ``dialect``."""
        if not app_ids:
            return []
        q = (
            sa.select(E.c.id, E.c.app_id, E.c.event_types, E.c.enabled)
            .where(E.c.app_id.in_(list(app_ids)), E.c.dialect == dialect)
            .order_by(E.c.id)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(q)).all())

    async def enqueue(self, rows: list[dict[str, Any]]) -> None:
        """Insert message rows in their own transaction (committed when this returns)."""
        if rows:
            async with self.store.write() as conn:
                await conn.execute(_INSERT_MESSAGES, rows)

    async def app_credentials(self, app_id: str) -> tuple[str, str] | None:
        """The app's Pusher key and secret (they sign ``pusher`` webhooks)."""
        q = sa.select(s.apps.c.key, s.apps.c.secret).where(s.apps.c.id == app_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return (row.key, row.secret) if row is not None else None

    # -- claiming ----------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        *,
        now: float,
        lease_until: float,
        limit: int,
        in_flight: dict[str, int],
        saturated: Sequence[str] = (),
        depth: int = 1,
    ) -> list[Claimed]:
        """Claim up to ``limit`` due messages, at most ``depth * max_concurrency - in_flight``
        per endpoint (``in_flight`` counts what this worker already holds for it; ``depth``
        above 1 lets a worker queue the next messages while the current ones are sent).
        Endpoints in ``saturated`` are skipped in SQL, so a backlog on one endpoint never
        fills the window and hides the others' due messages."""
        if not self.is_sqlite:
            return await self._claim_pg(
                worker_id,
                now=now,
                lease_until=lease_until,
                limit=limit,
                in_flight=in_flight,
                saturated=saturated,
                depth=depth,
            )
        p = M.alias("p")
        earlier = (
            sa.select(p.c.pos)
            .where(
                p.c.endpoint_id == M.c.endpoint_id,
                p.c.order_id == M.c.order_id,
                p.c.pos < M.c.pos,
                p.c.status.in_(OPEN_STATUSES),
            )
            .exists()
        )
        q = (
            sa.select(
                M.c.pos,
                M.c.id,
                M.c.endpoint_id,
                M.c.order_id,
                M.c.event_id,
                M.c.seq,
                M.c.wire_type,
                M.c.body,
                M.c.attempts,
                M.c.trigger,
                E.c.url,
                E.c.secret,
                E.c.old_secrets,
                E.c.failing_since,
                E.c.max_concurrency,
                E.c.dialect,
                E.c.app_id,
            )
            .select_from(M.join(E, E.c.id == M.c.endpoint_id))
            .where(
                M.c.status == "pending",
                M.c.next_attempt_at <= now,
                E.c.enabled.is_(True),
                sa.or_(E.c.fifo.is_(False), ~earlier),
            )
            .order_by(M.c.next_attempt_at, M.c.pos)
            .limit(limit)
        )
        if saturated:
            q = q.where(M.c.endpoint_id.not_in(list(saturated)))
        async with self.store.write() as conn:
            rows = (await conn.execute(q)).all()
            taken: dict[str, int] = {}
            chosen: list[Claimed] = []
            for r in rows:
                used = in_flight.get(r.endpoint_id, 0) + taken.get(r.endpoint_id, 0)
                if used >= r.max_concurrency * depth:
                    continue
                taken[r.endpoint_id] = taken.get(r.endpoint_id, 0) + 1
                chosen.append(
                    Claimed(
                        id=r.id,
                        endpoint_id=r.endpoint_id,
                        order_id=r.order_id,
                        event_id=r.event_id,
                        seq=r.seq,
                        wire_type=r.wire_type,
                        body=r.body.encode("utf-8"),
                        attempts=r.attempts,
                        trigger=r.trigger,
                        url=r.url,
                        secret=r.secret,
                        old_secrets=list(r.old_secrets or []),
                        failing_since=r.failing_since,
                        max_concurrency=r.max_concurrency,
                        dialect=r.dialect,
                        app_id=r.app_id,
                    )
                )
            if chosen:
                await conn.execute(
                    M.update()
                    .where(M.c.id.in_([c.id for c in chosen]))
                    .values(
                        status="delivering",
                        claimed_by=worker_id,
                        lease_until=lease_until,
                        updated_at=now,
                    )
                )
        return chosen

    async def _claim_pg(
        self,
        worker_id: str,
        *,
        now: float,
        lease_until: float,
        limit: int,
        in_flight: dict[str, int],
        saturated: Sequence[str],
        depth: int,
    ) -> list[Claimed]:
        """PostgreSQL: select, cap per endpoint and mark claimed in ONE statement (one round
        trip, no explicit transaction): the candidates are locked ``FOR UPDATE SKIP LOCKED``,
        ranked per endpoint, and only those within the endpoint's room are updated and
        returned; the rest are unlocked when the statement commits."""
        held = list(in_flight.items())
        async with self.engine.connect() as conn:
            raw = await _asyncpg(conn)
            rows = await raw.fetch(
                _PG_CLAIM,
                now,
                worker_id,
                lease_until,
                list(saturated),
                limit,
                [eid for eid, _ in held],
                [n for _, n in held],
                depth,
            )
        rows = sorted(rows, key=lambda r: (r["next_attempt_at"], r["pos"]))
        return [
            Claimed(
                id=r["id"],
                endpoint_id=r["endpoint_id"],
                order_id=r["order_id"],
                event_id=r["event_id"],
                seq=r["seq"],
                wire_type=r["wire_type"],
                body=r["body"].encode("utf-8"),
                attempts=r["attempts"],
                trigger=r["trigger"],
                url=r["url"],
                secret=r["secret"],
                old_secrets=_json_list(r["old_secrets"]),
                failing_since=r["failing_since"],
                max_concurrency=r["max_concurrency"],
                dialect=r["dialect"],
                app_id=r["app_id"],
            )
            for r in rows
        ]

    async def renew(self, worker_id: str, lease_until: float) -> None:
        async with self.store.write() as conn:
            await conn.execute(
                M.update()
                .where(M.c.status == "delivering", M.c.claimed_by == worker_id)
                .values(lease_until=lease_until)
            )

    async def reap(self, now: float) -> int:
        """Make messages whose claim lease expired (their worker died) due again."""
        async with self.store.write() as conn:
            result = await conn.execute(
                M.update()
                .where(M.c.status == "delivering", M.c.lease_until < now)
                .values(status="pending", claimed_by=None, lease_until=None, next_attempt_at=now)
            )
            return int(result.rowcount or 0)

    async def release(self, worker_id: str, now: float) -> None:
        """On clean shutdown: hand back claims not yet attempted."""
        async with self.store.write() as conn:
            await conn.execute(
                M.update()
                .where(M.c.status == "delivering", M.c.claimed_by == worker_id)
                .values(status="pending", claimed_by=None, lease_until=None, next_attempt_at=now)
            )

    # -- recording -----------------------------------------------------------------------

    async def record(self, worker_id: str, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        attempts = [
            {
                "id": o.attempt_id,
                "message_id": o.message_id,
                "endpoint_id": o.endpoint_id,
                "attempt": o.attempt,
                "trigger": o.trigger,
                "url": o.url,
                "at": o.at,
                "webhook_timestamp": o.webhook_timestamp,
                "status_code": o.status_code,
                "outcome": "delivered" if o.delivered else "failed",
                "reason": o.reason[:500],
                "latency_ms": o.latency_ms,
                "response_body": o.response_body,
                "next_attempt_at": o.next_attempt_at,
            }
            for o in outcomes
        ]
        updates = [
            {
                "b_id": o.message_id,
                "b_worker": worker_id,
                "b_status": o.message_status,
                "b_attempts": o.attempt,
                "b_next": o.next_attempt_at if o.next_attempt_at is not None else o.now,
                "b_error": None if o.delivered else o.reason[:500],
                "b_now": o.now,
            }
            for o in outcomes
        ]
        # The endpoint's failure streak, from its latest outcome in this batch.
        last: dict[str, Outcome] = {}
        for o in outcomes:
            last[o.endpoint_id] = o
        ok = sorted(eid for eid, o in last.items() if o.delivered)
        failing = [(eid, o.now) for eid, o in sorted(last.items()) if not o.delivered]
        disable = {o.endpoint_id: o.disable_endpoint for o in outcomes if o.disable_endpoint}
        if not self.is_sqlite and not failing and not disable:
            # The common case on PostgreSQL: attempts, message rows and the endpoints'
            # cleared failure streaks in one statement (one round trip, atomic).
            async with self.engine.connect() as conn:
                raw = await _asyncpg(conn)
                await raw.execute(
                    _PG_RECORD,
                    worker_id,
                    [u["b_id"] for u in updates],
                    [u["b_status"] for u in updates],
                    [u["b_attempts"] for u in updates],
                    [u["b_next"] for u in updates],
                    [u["b_error"] for u in updates],
                    [u["b_now"] for u in updates],
                    ok,
                    *([a[c] for a in attempts] for c in _ATTEMPT_COLUMNS),
                )
            return
        async with self.store.write() as conn:
            await conn.execute(A.insert(), attempts)
            await conn.execute(
                M.update()
                .where(M.c.id == sa.bindparam("b_id"), M.c.claimed_by == sa.bindparam("b_worker"))
                .values(
                    status=sa.bindparam("b_status"),
                    attempts=sa.bindparam("b_attempts"),
                    next_attempt_at=sa.bindparam("b_next"),
                    last_error=sa.bindparam("b_error"),
                    updated_at=sa.bindparam("b_now"),
                    claimed_by=None,
                    lease_until=None,
                ),
                updates,
            )
            if ok:
                await conn.execute(
                    E.update()
                    .where(E.c.id.in_(ok), E.c.failing_since.is_not(None))
                    .values(failing_since=None)
                )
            for eid, at in failing:
                await conn.execute(
                    E.update()
                    .where(E.c.id == eid, E.c.failing_since.is_(None))
                    .values(failing_since=at)
                )
            for eid, reason in disable.items():
                await conn.execute(
                    E.update()
                    .where(E.c.id == eid)
                    .values(enabled=False, disabled_reason=(reason or "")[:500])
                )

    # -- reading and replay --------------------------------------------------------------

    async def list_attempts(
        self,
        endpoint_id: str,
        *,
        limit: int,
        before: int | None = None,
        message_id: str | None = None,
    ) -> list[dict[str, Any]]:
        q = sa.select(A).where(A.c.endpoint_id == endpoint_id)
        if before is not None:
            q = q.where(A.c.pos < before)
        if message_id is not None:
            q = q.where(A.c.message_id == message_id)
        q = q.order_by(A.c.pos.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]

    async def list_messages(
        self,
        endpoint_id: str,
        *,
        status: str | None,
        order_id: str | None,
        limit: int,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        q = sa.select(M).where(M.c.endpoint_id == endpoint_id)
        if status is not None:
            q = q.where(M.c.status == status)
        if order_id is not None:
            q = q.where(M.c.order_id == order_id)
        if before is not None:
            q = q.where(M.c.pos < before)
        q = q.order_by(M.c.pos.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]

    async def count_messages(self, endpoint_id: str) -> dict[str, int]:
        q = (
            sa.select(M.c.status, sa.func.count())
            .where(M.c.endpoint_id == endpoint_id)
            .group_by(M.c.status)
        )
        async with self.engine.connect() as conn:
            return {row[0]: int(row[1]) for row in (await conn.execute(q)).all()}

    async def replay(
        self,
        endpoint_id: str,
        *,
        now: float,
        since: str | None,
        until: str | None,
        order_id: str | None,
        event_id: str | None,
        statuses: Iterable[str],
    ) -> int:
        """Make matching messages due again (same ``webhook-id``, a fresh retry schedule).
        Messages being delivered right now are left alone."""
        q = M.update().where(M.c.endpoint_id == endpoint_id, M.c.status.in_(list(statuses)))
        if since is not None:
            q = q.where(M.c.event_at >= since)
        if until is not None:
            q = q.where(M.c.event_at < until)
        if order_id is not None:
            q = q.where(M.c.order_id == order_id)
        if event_id is not None:
            q = q.where(M.c.event_id == event_id)
        q = q.values(
            status="pending",
            attempts=0,
            next_attempt_at=now,
            trigger="replay",
            last_error=None,
            updated_at=now,
        )
        async with self.store.write() as conn:
            result = await conn.execute(q)
            return int(result.rowcount or 0)

    async def open_count(self) -> int:
        q = sa.select(sa.func.count()).select_from(M).where(M.c.status.in_(OPEN_STATUSES))
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())
