"""SQL for webhook delivery: endpoints, the outbox of messages and the attempts log.

The outbox rows are inserted by :meth:`SqlOutbox.add` in the order's own write
transaction (the store's transaction hook: see ``ports.TxHook``), so an order change and
its webhook messages commit or roll back together. With ``ORDERCAST_OUTBOX_RENDER=worker``
the transaction writes the change to ``outbox_changes`` instead (:meth:`SqlOutbox.defer`),
committed with it just the same, and a worker turns it into its messages later
(:meth:`SqlOutbox.expand`).

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
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order
from ordercast.errors import StorageError
from ordercast.fastjson import dumps_str
from ordercast.ports import (
    ChangeRenderer,
    Claimed,
    EndpointTarget,
    OutboxMessage,
    Outcome,
    Row,
    Tx,
)
from ordercast.storage import schema as s
from ordercast.storage.connector import Connector, PgConnector

C = s.outbox_changes
E = s.webhook_endpoints
M = s.webhook_messages
A = s.webhook_attempts

OPEN_STATUSES = ("pending", "delivering")
#: Locations whose endpoints one outbox keeps between order changes (see ``targets``).
TARGETS_CACHED = 4096
#: Deferred changes one ``expand`` transaction renders at most.
EXPAND_BATCH = 200


def message_row(m: OutboxMessage) -> dict[str, Any]:
    """The ``webhook_messages`` row of a new message (the one place that spells it)."""
    return {
        "id": m.id,
        "endpoint_id": m.endpoint_id,
        "order_id": m.order_id,
        "event_id": m.event_id,
        "part": m.part,
        "seq": m.seq,
        "event_type": m.event_type,
        "wire_type": m.wire_type,
        "body": m.body,
        "status": m.status,
        "attempts": 0,
        "next_attempt_at": m.created_at,
        "lease_until": None,
        "claimed_by": None,
        "last_error": m.last_error,
        "trigger": "scheduled",
        "event_at": m.event_at,
        "created_at": m.created_at,
        "updated_at": m.created_at,
    }


def _target(r: Row) -> EndpointTarget:
    return EndpointTarget(
        id=r["id"],
        app_id=r["app_id"],
        dialect=r["dialect"],
        event_types=_json_list(r["event_types"]) if r["event_types"] is not None else None,
        enabled=bool(r["enabled"]),
        kind=r["kind"],
    )


def _endpoint_dict(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    d["event_types"] = list(d["event_types"]) if d["event_types"] is not None else None
    d["old_secrets"] = list(d["old_secrets"] or [])
    return d


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return list(value or [])


def _claimed(r: Row) -> Claimed:
    return Claimed(
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
        auth_key=r["auth_key"],
        auth_token=r["auth_token"],
    )


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


class _Moved(Exception):
    """A rendered round's inputs moved before its write: roll it back, render again."""


@dataclass(frozen=True, slots=True)
class _Round:
    """Deferred changes rendered from one snapshot: their ``pos``, the endpoints' revision
    they were rendered with, and their messages."""

    positions: list[int]
    revision: int
    messages: list[OutboxMessage]


async def _targets_revision(tx: Tx) -> int:
    row = await tx.fetch_one("webhook_targets_revision")
    return int(row[0]) if row is not None else -1


class SqlOutbox:
    """``ports.Outbox`` on a SQL store."""

    def __init__(
        self,
        engine: AsyncEngine,
        write: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
        connector: Connector,
        claim_depth: int,
    ) -> None:
        self.engine = engine
        self.write = write  # the store's write transactions on the engine
        self.connector = connector
        self.claim_depth = claim_depth
        # The endpoints of each location as of ``_revision`` of the database's
        # ``webhook_targets`` counter, which triggers bump on any change that may alter them
        # (migration 0007), whoever makes it: another node, the CLI, plain SQL.
        self._revision = -1
        self._targets: dict[tuple[str, str], list[EndpointTarget]] = {}

    # -- in an order's write transaction (the outbox hook) -------------------------

    async def targets(self, tx: Tx, tenant_id: str, location_id: str) -> list[EndpointTarget]:
        """Endpoints of the apps that may see orders at ``location_id`` (with the app's
        kind). The list is shared: read it, never change it.

        Kept per location while the database's ``webhook_targets`` revision, read in this
        transaction, stays the same: one primary-key read instead of a three-table join
        (and its rows' parsing) per order change. The join, when it runs, runs after the
        revision read in the same transaction, so what it returns is never older than that
        revision (SQLite: one snapshot; PostgreSQL, READ COMMITTED: a later statement).
        Revisions only grow: a transaction that read an older one than the cache's (a
        concurrent one on PostgreSQL) reads the endpoints itself and keeps nothing."""
        row = await tx.fetch_one("webhook_targets_revision")
        revision = int(row[0]) if row is not None else -1
        if revision > self._revision:
            self._targets.clear()
            self._revision = revision
        key = (tenant_id, location_id)
        found = self._targets.get(key) if revision == self._revision else None
        if found is None:
            rows = await tx.fetch_all(
                "endpoints_for_location", {"location_id": location_id, "tenant_id": tenant_id}
            )
            found = [_target(r) for r in rows]
            # Another transaction may have moved the cache on while this one read (an
            # await on PostgreSQL): keep the answer only under the revision it belongs to.
            if revision == self._revision and revision >= 0:
                if len(self._targets) >= TARGETS_CACHED:
                    self._targets.clear()
                self._targets[key] = found
        return found

    async def subscribers(self, tx: Tx, order_id: str) -> set[str]:
        return {r[0] for r in await tx.fetch_all("order_subscribers", {"order_id": order_id})}

    async def add(self, tx: Tx, messages: Sequence[OutboxMessage]) -> None:
        await tx.execute_many("insert_message", [message_row(m) for m in messages])

    async def defer(self, tx: Tx, order: Order, events: Sequence[EventRecord], now: float) -> None:
        """Keep the change (the order as committed, its events) for a worker to render
        (``expand``): one row in the order's transaction instead of its messages. The
        order's document is copied in SQL from its row, which the store wrote earlier in
        this transaction (``Order.as_dict`` as JSON: what ``expand`` reads back)."""
        copied = await tx.execute(
            "insert_outbox_change",
            {
                "order_id": order.id,
                "events": dumps_str([e.to_dict() for e in events]),
                "created_at": now,
            },
        )
        if copied != 1:
            # The store writes the order's row before its hooks; never drop a change.
            raise StorageError(f"order {order.id} has no row to defer its change from")

    async def expand(self, render: ChangeRenderer, limit: int = EXPAND_BATCH) -> int:
        """Turn up to ``limit`` deferred changes, oldest first, into their messages with
        ``render`` (the outbox hook's renderer) and delete them; how many were expanded.

        The rendering (the CPU) happens in a read-only snapshot, outside any write lock:
        on SQLite the file has ONE write lock, which the order writes of every node wait
        for, and rendering a round inside it held that lock for most of a worker's
        transactions (docs/benchmarks.md, session 14). A short write transaction then
        deletes the rows by their ``pos`` and inserts the messages, provided nothing it
        rendered from moved meanwhile: every row is still there (no other expander took
        it) and the endpoints' revision is the one rendered with. Otherwise it rolls back
        and this round renders inside the write transaction instead, as one expander at a
        time (SQLite: the write lock; PostgreSQL: an advisory lock). Either way messages
        are inserted in commit order and FIFO endpoints keep each order's order. Rows are
        deleted by their own ``pos``: on PostgreSQL a change committed meanwhile with a
        lower ``pos`` is left for the next round, never lost."""

        async def rendered(tx: Tx) -> _Round | None:
            rows = await tx.fetch_all("outbox_changes_oldest", {"limit": limit})
            if not rows:
                return None
            revision = await _targets_revision(tx)
            messages: list[OutboxMessage] = []
            for r in rows:
                order = Order.from_dict(json.loads(r["doc"]))
                events = [EventRecord.from_dict(e) for e in json.loads(r["events"])]
                messages.extend(await render(tx, order, events))
            return _Round([r["pos"] for r in rows], revision, messages)

        done = await self.connector.snapshot(rendered)
        if done is None:
            return 0
        pg = isinstance(self.connector, PgConnector)

        async def write(tx: Tx) -> int:
            if pg:
                await tx.fetch_one("outbox_expand_lock")
            if await _targets_revision(tx) != done.revision:
                raise _Moved
            for pos in done.positions:
                if await tx.execute("delete_outbox_change", {"pos": pos}) != 1:
                    raise _Moved  # another expander took it: roll back what this deleted
            await self.add(tx, done.messages)
            return len(done.positions)

        try:
            return await self.connector.transaction(write)
        except _Moved:
            pass

        async def locked(tx: Tx) -> int:
            if pg:
                await tx.fetch_one("outbox_expand_lock")
            again = await rendered(tx)
            if again is None:
                return 0
            await tx.execute_many("delete_outbox_change", [{"pos": p} for p in again.positions])
            await self.add(tx, again.messages)
            return len(again.positions)

        return await self.connector.transaction(locked)

    # -- endpoints -------------------------------------------------------------------

    async def create_endpoint(self, values: dict[str, Any]) -> None:
        async with self.write() as conn:
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
        async with self.write() as conn:
            await conn.execute(E.update().where(E.c.id == endpoint_id).values(**values))

    async def delete_endpoint(self, endpoint_id: str) -> None:
        async with self.write() as conn:
            await conn.execute(A.delete().where(A.c.endpoint_id == endpoint_id))
            await conn.execute(M.delete().where(M.c.endpoint_id == endpoint_id))
            await conn.execute(E.delete().where(E.c.id == endpoint_id))

    # -- messages that belong to no order (Pusher server webhooks) ------------------------

    async def app_targets(self, app_ids: Sequence[str], dialect: str) -> list[EndpointTarget]:
        """These apps' endpoints in ``dialect``."""
        if not app_ids:
            return []
        q = (
            sa.select(E.c.id, E.c.app_id, E.c.dialect, E.c.event_types, E.c.enabled)
            .where(E.c.app_id.in_(list(app_ids)), E.c.dialect == dialect)
            .order_by(E.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            EndpointTarget(
                id=r.id,
                app_id=r.app_id,
                dialect=r.dialect,
                event_types=list(r.event_types) if r.event_types else None,
                enabled=bool(r.enabled),
            )
            for r in rows
        ]

    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        """Insert messages in their own transaction (committed when this returns)."""
        if messages:

            async def insert(tx: Tx) -> None:
                await self.add(tx, messages)

            await self.connector.transaction(insert)

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
        if isinstance(self.connector, PgConnector):
            return await self._claim_pg(
                worker_id,
                now=now,
                lease_until=lease_until,
                limit=limit,
                in_flight=in_flight,
                saturated=saturated,
                depth=depth,
            )

        async def claim(tx: Tx) -> list[Claimed]:
            rows = await tx.fetch_all(
                "claim_candidates",
                {"now": now, "saturated": json.dumps(list(saturated)), "limit": limit},
            )
            taken: dict[str, int] = {}
            chosen: list[Claimed] = []
            for r in rows:
                eid = r["endpoint_id"]
                used = in_flight.get(eid, 0) + taken.get(eid, 0)
                if used >= r["max_concurrency"] * depth:
                    continue
                taken[eid] = taken.get(eid, 0) + 1
                chosen.append(_claimed(r))
            await tx.execute_many(
                "claim_message",
                [
                    {"id": c.id, "worker_id": worker_id, "lease_until": lease_until, "now": now}
                    for c in chosen
                ],
            )
            return chosen

        return await self.connector.transaction(claim)

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
        """PostgreSQL: one statement (``claim_messages`` in ``sql/postgresql.sql``)."""
        held = list(in_flight.items())
        rows = await self.connector.fetch_all(
            "claim_messages",
            {
                "now": now,
                "worker_id": worker_id,
                "lease_until": lease_until,
                "saturated": list(saturated),
                "limit": limit,
                "held_ids": [eid for eid, _ in held],
                "held_counts": [n for _, n in held],
                "depth": depth,
            },
        )
        rows = sorted(rows, key=lambda r: (r["next_attempt_at"], r["pos"]))
        return [_claimed(r) for r in rows]

    async def renew(self, worker_id: str, lease_until: float) -> None:
        await self.connector.execute(
            "renew_claims", {"worker_id": worker_id, "lease_until": lease_until}
        )

    async def depth(self, now: float) -> tuple[dict[str, int], float | None]:
        counts = (
            sa.select(M.c.status, sa.func.count())
            .where(M.c.status.in_(OPEN_STATUSES))
            .group_by(M.c.status)
        )
        oldest = (
            sa.select(sa.func.min(M.c.next_attempt_at))
            .select_from(M.join(E, E.c.id == M.c.endpoint_id))
            .where(M.c.status == "pending", E.c.enabled.is_(True))
        )
        waiting = sa.select(sa.func.count()).select_from(C)
        async with self.engine.connect() as conn:
            depth = {row[0]: int(row[1]) for row in (await conn.execute(counts)).all()}
            due = (await conn.execute(oldest)).scalar()
            # Changes kept for a worker to render (ORDERCAST_OUTBOX_RENDER=worker).
            depth["rendering"] = int((await conn.execute(waiting)).scalar_one())
        # A message is "due" once its next attempt time has passed.
        return depth, float(due) if due is not None and float(due) <= now else None

    async def reap(self, now: float) -> int:
        """Make messages whose claim lease expired (their worker died) due again."""
        return await self.connector.execute("reap_claims", {"now": now})

    async def release(self, worker_id: str, now: float) -> None:
        """On clean shutdown: hand back claims not yet attempted."""
        await self.connector.execute("release_claims", {"worker_id": worker_id, "now": now})

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
                "id": o.message_id,
                "worker_id": worker_id,
                "status": o.message_status,
                "attempts": o.attempt,
                "next_attempt_at": o.next_attempt_at if o.next_attempt_at is not None else o.now,
                "last_error": None if o.delivered else o.reason[:500],
                "now": o.now,
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
        if isinstance(self.connector, PgConnector) and not failing and not disable:
            # The common case on PostgreSQL: one statement (``record_outcomes``).
            params: dict[str, Any] = {
                "worker_id": worker_id,
                "ids": [u["id"] for u in updates],
                "statuses": [u["status"] for u in updates],
                "attempts": [u["attempts"] for u in updates],
                "next_at": [u["next_attempt_at"] for u in updates],
                "errors": [u["last_error"] for u in updates],
                "nows": [u["now"] for u in updates],
                "succeeded": ok,
            }
            for column in _ATTEMPT_COLUMNS:
                params["a_" + column] = [a[column] for a in attempts]
            await self.connector.execute("record_outcomes", params)
            return

        async def record(tx: Tx) -> None:
            await tx.execute_many("insert_attempt", attempts)
            await tx.execute_many("finish_message", updates)
            await tx.execute_many("endpoint_succeeded", [{"id": eid} for eid in ok])
            await tx.execute_many(
                "endpoint_failing", [{"id": eid, "since": at} for eid, at in failing]
            )
            await tx.execute_many(
                "disable_endpoint",
                [{"id": eid, "reason": (r or "")[:500]} for eid, r in disable.items()],
            )

        await self.connector.transaction(record)

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
        async with self.write() as conn:
            result = await conn.execute(q)
            return int(result.rowcount or 0)

    async def open_count(self) -> int:
        q = sa.select(sa.func.count()).select_from(M).where(M.c.status.in_(OPEN_STATUSES))
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())
