"""POS flow use cases: the POS callbacks, its order events, fire requests and due timers.

The rules are ``domain/pos_flow.py``; the webhooks to the POS are rendered by the ``rbi``
dialect from the events decided there and delivered by the webhook outbox; the timers are
written by a store transaction hook (``storage/timers.py``) in the same transaction as the
events. This module only checks who calls and runs the commands through the order service.
"""

from __future__ import annotations

import logging
from typing import Any

from ordercast.domain import pos_flow as pf
from ordercast.domain.access import Admin, Principal, require_app
from ordercast.domain.isotime import iso
from ordercast.errors import NotFound
from ordercast.ports import Clock, DueTimer, Timers
from ordercast.services.orders import CommandResult, OrderService

log = logging.getLogger("ordercast.pos_flow")

TIMER_ACTOR: dict[str, Any] = {"type": "system", "kind": "timer"}


class PosFlowService:
    def __init__(
        self, orders: OrderService, timers: Timers, clock: Clock, callback_timeout: float
    ) -> None:
        self.orders = orders
        self.timers = timers
        self.clock = clock
        self.callback_timeout = callback_timeout

    async def callback(
        self,
        principal: Principal,
        order_id: str,
        callback: pf.Callback,
        *,
        status: str,
        total: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> CommandResult:
        """A POS answer to the price, commit or fire webhook."""
        require_app(principal, pf.POS_APP_KIND)
        cmd = pf.PosCallback(
            callback, status, iso(self.clock.now()), total=total, errors=errors or None
        )
        return await self.orders.execute(principal, order_id, cmd)

    async def order_event(
        self,
        principal: Principal,
        order_id: str,
        *,
        status: str,
        errors: list[dict[str, Any]] | None = None,
        occurred_at: str | None = None,
    ) -> CommandResult:
        """A status pushed by the POS on the order event endpoint."""
        require_app(principal, pf.POS_APP_KIND)
        cmd = pf.PosOrderEvent(status, errors or None, occurred_at)
        return await self.orders.execute(principal, order_id, cmd)

    async def fire(self, principal: Principal, order_id: str) -> CommandResult:
        """Ask for the fire webhook now (it takes precedence over a pending fire time)."""
        app = require_app(principal)
        by = "channel" if app.kind == "channel" else "app"
        return await self.orders.execute(principal, order_id, pf.RequestFire(by=by))

    async def run_timer(self, timer: DueTimer) -> CommandResult | None:
        """Run one due timer; None when its order is gone."""
        cmd = pf.command_for_timer(pf.TimerKind(timer.kind), self.callback_timeout)
        try:
            return await self.orders.execute(Admin(), timer.order_id, cmd, actor=TIMER_ACTOR)
        except NotFound:
            return None
