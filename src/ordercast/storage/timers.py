"""SQL for the POS flow's durable timers (table ``timers``, migration 0003).

Timers are written by :class:`SqlTimers.hook`, a store transaction hook (synchronous: see
``ports.TxHook``), on the connection of the order's own write: an order change and its
timers commit or roll back together.
The hook asks a pure planner (``domain.pos_flow.plan_timers``) what the change means:
timers to add, and kinds whose pending timers no longer apply (cancelled in place).

Claiming: a runner takes due, unleased timers and leases them in one short transaction —
``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several processes share the table; on SQLite
the store's single-writer lock serialises claims. A runner that dies leaves a lease that
expires, and the timer runs again: running twice is harmless, because each timer's command
is decided against the order (``order.fire_requested`` is recorded at most once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order
from ordercast.domain.pos_flow import POS_APP_KIND, POS_DIALECT, TimerPlan, parse_iso
from ordercast.ports import DueTimer
from ordercast.services.common import new_id
from ordercast.storage import schema as s
from ordercast.storage.sql import SqlStore

T = s.timers

# When a pending timer can next be claimed: its due time, or the end of its lease.
_ready_at = sa.case((T.c.lease_until > T.c.due_at, T.c.lease_until), else_=T.c.due_at)

# The hook's statements, built once (it runs in order writes).
_CANCEL = (
    T.update()
    .where(
        T.c.order_id == sa.bindparam("b_order"),
        T.c.done.is_(False),
        T.c.kind.in_(sa.bindparam("b_kinds", expanding=True)),
    )
    .values(done=True, outcome="cancelled", lease_until=None, updated_at=sa.bindparam("b_now"))
)
_EXISTING_KINDS = sa.select(T.c.kind).where(
    T.c.order_id == sa.bindparam("b_order"),
    T.c.kind.in_(sa.bindparam("b_kinds", expanding=True)),
)
_INSERT = T.insert()

Planner = Callable[[Order, list[EventRecord]], TimerPlan]


class SqlTimers:
    def __init__(
        self, store: SqlStore, planner: Planner, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.planner = planner
        self.clock = clock

    # -- inside the order's transaction ------------------------------------------------

    def hook(self, conn: sa.Connection, order: Order, events: list[EventRecord]) -> None:
        if not order.pos_flow or not events:
            return
        plan = self.planner(order, events)
        now = self.clock()
        if plan.cancel:
            conn.execute(
                _CANCEL,
                {
                    "b_order": order.id,
                    "b_kinds": sorted(k.value for k in plan.cancel),
                    "b_now": now,
                },
            )
        if not plan.schedule:
            return
        kinds = sorted(k.value for k in plan.schedule)
        existing = set(
            conn.execute(_EXISTING_KINDS, {"b_order": order.id, "b_kinds": kinds}).scalars()
        )
        rows: list[dict[str, Any]] = [
            {
                "id": new_id("tmr_"),
                "order_id": order.id,
                "kind": kind.value,
                "due_at": parse_iso(due).timestamp(),
                "done": False,
                "outcome": None,
                "lease_until": None,
                "attempts": 0,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
            }
            for kind, due in sorted(plan.schedule.items())
            if kind.value not in existing  # a timer kind is set once per order
        ]
        if rows:
            conn.execute(_INSERT, rows)

    # -- the runner's side -------------------------------------------------------------

    async def pos_flow_location(self, tenant_id: str, location_id: str) -> bool:
        """Whether a POS app granted ``location_id`` has an enabled ``rbi`` endpoint."""
        e, a, al = s.webhook_endpoints, s.apps, s.app_locations
        q = (
            sa.select(e.c.id)
            .select_from(e.join(a, a.c.id == e.c.app_id).join(al, al.c.app_id == e.c.app_id))
            .where(
                al.c.location_id == location_id,
                a.c.tenant_id == tenant_id,
                a.c.kind == POS_APP_KIND,
                e.c.dialect == POS_DIALECT,
                e.c.enabled.is_(True),
            )
            .limit(1)
        )
        async with self.store.engine.connect() as conn:
            return (await conn.execute(q)).first() is not None

    async def claim_due(self, limit: int, lease_seconds: float) -> list[DueTimer]:
        now = self.clock()
        q = (
            sa.select(T.c.id, T.c.order_id, T.c.kind, T.c.due_at, T.c.attempts)
            .where(
                T.c.done.is_(False),
                T.c.due_at <= now,
                sa.or_(T.c.lease_until.is_(None), T.c.lease_until < now),
            )
            .order_by(T.c.due_at)
            .limit(limit)
        )
        if not self.store.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        async with self.store.write() as conn:
            rows = (await conn.execute(q)).all()
            if not rows:
                return []
            await conn.execute(
                T.update()
                .where(T.c.id.in_([r.id for r in rows]))
                .values(
                    lease_until=now + lease_seconds,
                    attempts=T.c.attempts + 1,
                    updated_at=now,
                )
            )
        return [DueTimer(r.id, r.order_id, r.kind, r.due_at, r.attempts + 1) for r in rows]

    async def finish(self, timer_id: str, outcome: str, error: str | None = None) -> None:
        async with self.store.write() as conn:
            await conn.execute(
                T.update()
                .where(T.c.id == timer_id)
                .values(
                    done=True,
                    outcome=outcome,
                    lease_until=None,
                    last_error=error[:500] if error else None,
                    updated_at=self.clock(),
                )
            )

    async def release(self, timer_id: str, retry_at: float, error: str) -> None:
        """Give a claimed timer back, to run again at ``retry_at``."""
        async with self.store.write() as conn:
            await conn.execute(
                T.update()
                .where(T.c.id == timer_id)
                .values(lease_until=retry_at, last_error=error[:500], updated_at=self.clock())
            )

    async def next_due(self) -> float | None:
        async with self.store.engine.connect() as conn:
            value = (
                await conn.execute(sa.select(sa.func.min(_ready_at)).where(T.c.done.is_(False)))
            ).scalar_one_or_none()
        return float(value) if value is not None else None

    async def pending(self, order_id: str) -> list[dict[str, Any]]:
        """The order's timers (tests, diagnostics)."""
        async with self.store.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(T).where(T.c.order_id == order_id).order_by(T.c.created_at, T.c.kind)
            )
            return [dict(r) for r in rows.mappings()]
