"""SQL for the POS flow's durable timers (table ``timers``, migration 0003).

Timers are written by :class:`SqlTimers.hook`, a store transaction hook (see
``ports.TxHook``), in the order's own write transaction: an order change and its timers
commit or roll back together.
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

from ordercast.domain.events import EventRecord
from ordercast.domain.isotime import parse_iso
from ordercast.domain.order import Order
from ordercast.domain.pos_flow import POS_APP_KIND, POS_DIALECT
from ordercast.ports import DueTimer, IdFactory, TimerPlanner, Tx
from ordercast.storage.connector import Connector


class SqlTimers:
    """``ports.Timers`` on a SQL store (build it with ``store.timers(...)``)."""

    def __init__(
        self,
        connector: Connector,
        planner: TimerPlanner,
        *,
        new_id: IdFactory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connector = connector
        self.planner = planner
        self.new_id = new_id
        self.clock = clock

    # -- inside the order's transaction ------------------------------------------------

    async def hook(self, tx: Tx, order: Order, events: list[EventRecord]) -> None:
        if not order.pos_flow or not events:
            return
        plan = self.planner(order, events)
        now = self.clock()
        await tx.execute_many(
            "cancel_timer",
            [
                {"order_id": order.id, "kind": kind, "now": now}
                for kind in sorted(k.value for k in plan.cancel)
            ],
        )
        if not plan.schedule:
            return
        existing = {r[0] for r in await tx.fetch_all("timer_kinds", {"order_id": order.id})}
        await tx.execute_many(
            "insert_timer",
            [
                {
                    "id": self.new_id("tmr_"),
                    "order_id": order.id,
                    "kind": kind.value,
                    "due_at": parse_iso(due).timestamp(),
                    "now": now,
                }
                for kind, due in sorted(plan.schedule.items())
                if kind.value not in existing  # a timer kind is set once per order
            ],
        )

    # -- the runner's side -------------------------------------------------------------

    async def pos_flow_location(self, tenant_id: str, location_id: str) -> bool:
        """Whether a POS app granted ``location_id`` has an enabled ``rbi`` endpoint."""
        rows = await self.connector.fetch_all(
            "pos_flow_location",
            {
                "location_id": location_id,
                "tenant_id": tenant_id,
                "app_kind": POS_APP_KIND,
                "dialect": POS_DIALECT,
            },
        )
        return bool(rows)

    async def claim_due(self, limit: int, lease_seconds: float) -> list[DueTimer]:
        now = self.clock()

        async def claim(tx: Tx) -> list[DueTimer]:
            rows = await tx.fetch_all("due_timers", {"now": now, "limit": limit})
            await tx.execute_many(
                "lease_timer",
                [{"id": r["id"], "lease_until": now + lease_seconds, "now": now} for r in rows],
            )
            return [
                DueTimer(r["id"], r["order_id"], r["kind"], r["due_at"], r["attempts"] + 1)
                for r in rows
            ]

        return await self.connector.transaction(claim)

    async def finish(self, timer_id: str, outcome: str, error: str | None = None) -> None:
        await self.connector.execute(
            "finish_timer",
            {
                "id": timer_id,
                "outcome": outcome,
                "error": error[:500] if error else None,
                "now": self.clock(),
            },
        )

    async def release(self, timer_id: str, retry_at: float, error: str) -> None:
        """Give a claimed timer back, to run again at ``retry_at``."""
        await self.connector.execute(
            "release_timer",
            {"id": timer_id, "retry_at": retry_at, "error": error[:500], "now": self.clock()},
        )

    async def next_due(self) -> float | None:
        rows = await self.connector.fetch_all("next_timer_due")
        value = rows[0][0] if rows else None
        return float(value) if value is not None else None

    async def count_pending(self) -> int:
        """Timers not yet done (due or not), across all orders."""
        rows = await self.connector.fetch_all("count_pending_timers")
        return int(rows[0][0]) if rows else 0

    async def pending(self, order_id: str) -> list[dict[str, Any]]:
        """The order's timers (tests, diagnostics)."""
        rows = await self.connector.fetch_all("timers_of_order", {"order_id": order_id})
        return [{**dict(r), "done": bool(r["done"])} for r in rows]
