"""Order use cases: load → decide (pure) → one transaction → publish after commit."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ordercast.domain import decide as d
from ordercast.domain import events as ev
from ordercast.domain.access import (
    Admin,
    AppPrincipal,
    Principal,
    UserPrincipal,
    check_location_access,
    check_order_access,
    require_app,
)
from ordercast.domain.events import EventRecord, NewEvent
from ordercast.domain.isotime import EARLIEST, LATEST, iso
from ordercast.domain.lifecycle import ORDER_TERMINAL, Move, OrderStatus
from ordercast.domain.order import Order, evolve, order_total, with_totals
from ordercast.domain.pos_flow import PosState
from ordercast.errors import Forbidden, NotFound, ValidationError
from ordercast.ports import Bus, BusMessage, Clock, Ids, Mutation, OrderQuery, Store
from ordercast.services.common import SYSTEM_IDS

log = logging.getLogger("ordercast.orders")

ORDER_TYPES = ("pickup", "delivery", "dine_in")
CANCELLED_BY = ("customer", "venue", "platform", "courier")
_DEFAULT_CANCELLER = {
    "pos": "venue",
    "kds": "venue",
    "channel": "customer",
    "rider": "courier",
    "loyalty": "platform",
}


@dataclass(frozen=True, slots=True)
class CommandResult:
    order: Order
    applied: bool
    outcome: Move
    detail: str | None
    events: list[EventRecord]


def actor_of(principal: Principal) -> dict[str, Any]:
    if isinstance(principal, AppPrincipal):
        return {"type": "app", "id": principal.app_id, "kind": principal.kind}
    if isinstance(principal, UserPrincipal):
        return {"type": "user", "id": principal.user_id}
    if isinstance(principal, Admin):
        return {"type": "admin"}
    return {"type": "system"}


class OrderService:
    def __init__(self, store: Store, bus: Bus, clock: Clock, ids: Ids = SYSTEM_IDS) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.ids = ids
        # Called after every committed change (metrics, gateways in-process); never raises.
        self.after_commit: list[Callable[[Order, list[EventRecord]], None]] = []
        # POS flow: (tenant_id, location_id) -> whether new orders there run price → commit
        # → fire with the location's POS app (services/pos_flow.py). None: never.
        self.pos_flow_location: Callable[[str, str], Awaitable[bool]] | None = None

    # -- reading ---------------------------------------------------------------------

    async def get(self, principal: Principal, order_id: str) -> Order:
        order = await self.store.get_order(order_id)
        if order is None:
            raise NotFound(f"order {order_id} not found")
        check_order_access(principal, order.id, order.tenant_id, order.location_id, order.user_id)
        return order

    async def list_orders(
        self,
        principal: Principal,
        *,
        location_id: str | None,
        status: str | None,
        updated_since: str | None,
        limit: int,
    ) -> list[Order]:
        if status is not None and status not in {s.value for s in OrderStatus}:
            raise ValidationError(f"unknown status '{status}'", field="status")
        if isinstance(principal, UserPrincipal):
            # A user's own orders, at the locations the token's issuing app is granted.
            if location_id is not None:
                await self.check_location(principal, location_id)
            return await self.store.list_orders(
                tenant_id=principal.tenant_id,
                location_ids=frozenset({location_id}) if location_id else principal.location_ids,
                user_id=principal.user_id,
                status=status,
                updated_since=updated_since,
                limit=limit,
            )
        app = require_app(principal)
        if location_id is not None:
            await self.check_location(app, location_id)
            locations = frozenset({location_id})
        else:
            locations = app.location_ids
        return await self.store.list_orders(
            tenant_id=app.tenant_id,
            location_ids=locations,
            user_id=None,
            status=status,
            updated_since=updated_since,
            limit=limit,
        )

    async def query(self, principal: Principal, query: OrderQuery) -> tuple[int, list[Order]]:
        """An app's orders at the locations in ``query`` (each must be granted): the total
        that match and one page of them (the Doshii list)."""
        app = require_app(principal)
        for location_id in query.location_ids:
            await self.check_location(app, location_id)
        return await self.store.query_orders(app.tenant_id, query)

    async def check_location(
        self, principal: AppPrincipal | UserPrincipal, location_id: str
    ) -> None:
        """NotFound (another tenant's, or no such location) or Forbidden (not granted)."""
        if location_id in principal.location_ids:
            return  # granted locations are the principal's tenant's (checked when granted)
        location = await self.store.get_location(location_id)
        if location is None:
            raise NotFound(f"location {location_id} not found")
        check_location_access(principal, location.id, location.tenant_id)

    async def events(
        self, principal: Principal, order_id: str, after_seq: int, limit: int
    ) -> tuple[Order, list[EventRecord]]:
        if after_seq < 0:
            raise ValidationError("after_seq must be 0 or more", field="after_seq")
        order = await self.get(principal, order_id)
        return order, await self.store.list_events(order_id, after_seq, limit)

    # -- creating --------------------------------------------------------------------

    async def create(self, principal: Principal, spec: dict[str, Any]) -> Order:
        app = require_app(principal)
        location = await self.store.get_location(spec["location_id"])
        if location is None:
            raise NotFound(f"location {spec['location_id']} not found")
        check_location_access(app, location.id, location.tenant_id)
        # A POS-flow location starts orders at draft (the price webhook goes out); an order
        # created there at submitted skips pricing (the commit webhook goes out).
        asked = spec.get("status")
        pos_flow = False
        if self.pos_flow_location is not None and asked in (None, "draft", "submitted"):
            pos_flow = await self.pos_flow_location(location.tenant_id, location.id)
        default = OrderStatus.DRAFT if pos_flow else OrderStatus.SUBMITTED
        status = asked or default.value
        allowed = [s.value for s in OrderStatus if s not in ORDER_TERMINAL]
        if status not in allowed:
            raise ValidationError(
                f"a new order's status must be one of: {', '.join(allowed)}", field="status"
            )
        if spec.get("type", "pickup") not in ORDER_TYPES:
            raise ValidationError(
                f"unknown order type '{spec.get('type')}'; use one of: {', '.join(ORDER_TYPES)}",
                field="type",
            )
        now = iso(self.clock.now())
        items = [
            {**item, "uuid": item.get("uuid") or self.ids.uuid4()} for item in spec.get("items", [])
        ]
        uuids = [i["uuid"] for i in items]
        if len(set(uuids)) != len(uuids):
            raise ValidationError("item uuids must be unique within an order", field="items")
        items = with_totals(items)
        surcounts = list(spec.get("surcounts") or [])
        order = Order(
            id=self.ids.new_id("ord_"),
            tenant_id=location.tenant_id,
            location_id=location.id,
            status=status,
            version=0,
            type=spec.get("type", "pickup"),
            created_at=now,
            updated_at=now,
            created_by=app.app_id,
            user_id=spec.get("user_id"),
            items=items,
            unapproved_items=list(spec.get("unapproved_items") or []),
            surcounts=surcounts,
            consumer=dict(spec.get("consumer") or {}),
            required_at=spec.get("required_at"),
            available_eta=spec.get("available_eta"),
            external_order_ref=spec.get("external_order_ref"),
            pos_ref=spec.get("pos_ref"),
            notes=spec.get("notes"),
            total=order_total(items, surcounts),
            fire_order_in_seconds=spec.get("fire_order_in_seconds"),
            pos=PosState(flow=pos_flow),
        )
        created = NewEvent(ev.ORDER_CREATED, {"status": status, "order": order.to_dict()})
        # The creation event is seq 1; the snapshot inside it is the order at seq 0.
        after, records = self._number(order, [created], actor_of(principal), now)
        mutation = Mutation(order=after, events=records, subscribe_app_id=app.app_id)
        await self.store.create_order(mutation)
        await self._committed(after, records)
        return after

    # -- changing --------------------------------------------------------------------

    async def _run(
        self,
        principal: Principal,
        order_id: str,
        cmd: d.Command,
        *,
        actor: dict[str, Any] | None = None,
        new_delivery_id: str | None = None,
        expect: Callable[[Order], None] | None = None,
    ) -> CommandResult:
        outcome: dict[str, Any] = {}

        def change(order: Order) -> Mutation | None:
            check_order_access(
                principal, order.id, order.tenant_id, order.location_id, order.user_id
            )
            if expect is not None:  # a precondition on the order as read in this transaction
                expect(order)
            decision = d.decide(order, cmd)
            outcome["decision"] = decision
            outcome["before"] = order
            if not decision.events:
                return None
            now = iso(self.clock.now())
            after, records = self._number(order, decision.events, actor or actor_of(principal), now)
            subscriber = principal.app_id if isinstance(principal, AppPrincipal) else None
            return Mutation(
                order=after,
                events=records,
                subscribe_app_id=subscriber,
                new_delivery_id=new_delivery_id,
            )

        mutation = await self.store.mutate_order(order_id, change)
        decision: ev.Decision = outcome["decision"]
        if mutation is None:
            return CommandResult(
                outcome["before"], decision.applied, decision.outcome, decision.detail, []
            )
        await self._committed(mutation.order, mutation.events)
        return CommandResult(
            mutation.order, decision.applied, decision.outcome, decision.detail, mutation.events
        )

    async def execute(
        self,
        principal: Principal,
        order_id: str,
        cmd: d.Command,
        *,
        actor: dict[str, Any] | None = None,
        expect: Callable[[Order], None] | None = None,
    ) -> CommandResult:
        """Run any domain command (the POS flow's use cases build their own). ``expect``
        checks the order inside the write transaction and raises to refuse (e.g. the
        Doshii API's optimistic ``version``)."""
        return await self._run(principal, order_id, cmd, actor=actor, expect=expect)

    def _number(
        self, order: Order, new_events: list[NewEvent], actor: dict[str, Any], now: str
    ) -> tuple[Order, list[EventRecord]]:
        records = []
        for event in new_events:
            order = evolve(order, event, now)
            records.append(
                EventRecord(
                    event_id=self.ids.new_id("evt_"),
                    order_id=order.id,
                    seq=order.version,
                    type=event.type,
                    status=order.status,
                    occurred_at=event.occurred_at or now,
                    recorded_at=now,
                    actor=actor,
                    data=event.data,
                )
            )
        return order, records

    async def _committed(self, order: Order, records: list[EventRecord]) -> None:
        for hook in self.after_commit:
            try:
                hook(order, records)
            except Exception:  # a hook must never undo a committed change
                log.exception("after-commit hook failed")
        try:
            await self.bus.publish(
                # No copies (as the events' to_dict): bus consumers only read a message.
                # committed_at: wall-clock seconds, for the commit -> socket latency metric.
                BusMessage(
                    "order",
                    {
                        "order": order.as_dict(),
                        "events": [r.to_dict() for r in records],
                        "committed_at": time.time(),
                    },
                )
            )
        except Exception:
            # The log is the truth: subscribers catch up from storage by seq.
            log.exception("bus publish failed for order %s", order.id)

    async def transition(
        self,
        principal: Principal,
        order_id: str,
        *,
        to: str,
        reason: str | None = None,
        how: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        occurred_at: str | None = None,
    ) -> CommandResult:
        require_app(principal)
        cmd = d.Transition(to=to, reason=reason, how=how, errors=errors, occurred_at=occurred_at)
        return await self._run(principal, order_id, cmd)

    async def confirm(
        self,
        principal: Principal,
        order_id: str,
        *,
        confirmation: int,
        reason: str | None,
        adjustment: dict[str, Any] | None,
    ) -> CommandResult:
        require_app(principal)
        order = await self.get(principal, order_id)
        location = await self.store.get_location(order.location_id)
        available_eta, required_at = self._adjusted_times(
            adjustment or {}, location.timezone if location else "UTC"
        )
        cmd = d.Confirm(
            confirmation=confirmation,
            reason=reason,
            adjustment=adjustment,
            available_eta=available_eta,
            required_at=required_at,
        )
        return await self._run(principal, order_id, cmd)

    def _adjusted_times(self, adj: dict[str, Any], tz: str) -> tuple[str | None, str | None]:
        """Open Dining adjustments: ``time`` in minutes (ASAP), or ``order_date`` +
        ``eta`` (advance, wall-clock time at the location)."""
        now = self.clock.now()
        if adj.get("time") is not None:
            minutes = adj["time"]
            if not isinstance(minutes, int) or not 0 < minutes <= 24 * 60:
                raise ValidationError(
                    "adjustment.time is the new ASAP time in minutes (1 to 1440)",
                    field="adjustment.time",
                )
            return iso(now + timedelta(minutes=minutes)), None
        if adj.get("order_date") or adj.get("eta"):
            if not (adj.get("order_date") and adj.get("eta")):
                raise ValidationError(
                    "an advance-order adjustment needs both order_date (MM/DD/YYYY) "
                    "and eta (like '9:45 PM')",
                    field="adjustment",
                )
            try:
                local = datetime.strptime(
                    f"{adj['order_date']} {adj['eta']}", "%m/%d/%Y %I:%M %p"
                ).replace(tzinfo=ZoneInfo(tz))
                utc = local.astimezone(UTC)
            except (ValueError, OverflowError) as exc:
                raise ValidationError(
                    "adjustment.order_date must be MM/DD/YYYY and adjustment.eta like '9:45 PM'",
                    field="adjustment",
                ) from exc
            if not EARLIEST <= utc <= LATEST:
                raise ValidationError(
                    f"adjustment.order_date must be between {EARLIEST.year} and {LATEST.year}",
                    field="adjustment.order_date",
                )
            when = iso(utc)
            return when, when
        return None, None

    async def notify(
        self, principal: Principal, order_id: str, *, type: str, message: str
    ) -> CommandResult:
        require_app(principal)
        cmd = d.Notify(notification_id=self.ids.uuid4(), type=type, message=message)
        return await self._run(principal, order_id, cmd)

    async def note(self, principal: Principal, order_id: str, *, text: str) -> CommandResult:
        require_app(principal)
        return await self._run(principal, order_id, d.AddNote(text=text))

    async def cancel(
        self,
        principal: Principal,
        order_id: str,
        *,
        reason: str | None,
        by: str | None,
        request_only: bool = False,
    ) -> CommandResult:
        if by is not None and by not in CANCELLED_BY:
            raise ValidationError(
                f"unknown canceller '{by}'; use one of: {', '.join(CANCELLED_BY)}", field="by"
            )
        if isinstance(principal, UserPrincipal):
            # A customer asks; the venue (or the platform) decides.
            cmd = d.Cancel(reason=reason, by="customer", request_only=True)
        else:
            default = (
                _DEFAULT_CANCELLER.get(principal.kind, "platform")
                if isinstance(principal, AppPrincipal)
                else "platform"
            )
            cmd = d.Cancel(reason=reason, by=by or default, request_only=request_only)
        return await self._run(principal, order_id, cmd)

    async def start_delivery(
        self,
        principal: Principal,
        order_id: str,
        *,
        provider: str | None,
        expect: Callable[[Order], None] | None = None,
    ) -> tuple[CommandResult, str]:
        require_app(principal)
        delivery_id = self.ids.new_id("dlv_")
        result = await self._run(
            principal,
            order_id,
            d.StartDelivery(delivery_id=delivery_id, provider=provider),
            new_delivery_id=delivery_id,
            expect=expect,
        )
        return result, delivery_id

    async def courier_update(
        self,
        principal: Principal,
        delivery_id: str,
        *,
        status: str | None,
        occurred_at: str | None = None,
        proof: str | dict[str, Any] | None = None,
        refund: dict[str, Any] | None = None,
        location: dict[str, Any] | None = None,
        eta: str | None = None,
        details: dict[str, Any] | None = None,
        expect: Callable[[Order], None] | None = None,
    ) -> CommandResult:
        require_app(principal)
        order_id = await self.store.order_id_for_delivery(delivery_id)
        if order_id is None:
            raise NotFound(f"delivery {delivery_id} not found")
        cmd = d.CourierUpdate(
            delivery_id=delivery_id,
            status=status,
            occurred_at=occurred_at,
            proof=proof,
            refund=refund,
            location=location,
            eta=eta,
            details=details,
        )
        try:
            return await self._run(principal, order_id, cmd, expect=expect)
        except NotFound as exc:
            # Do not reveal the order behind a delivery the caller may not see.
            raise NotFound(f"delivery {delivery_id} not found") from exc
        except Forbidden as exc:
            raise Forbidden(
                f"delivery {delivery_id} is for an order at a location this app is not granted"
            ) from exc

    # -- Doshii-style subscriptions ---------------------------------------------------

    async def subscribe(self, principal: Principal, order_id: str) -> Order:
        app = require_app(principal)
        order = await self.get(principal, order_id)
        await self.store.subscribe(order.id, app.app_id, False, iso(self.clock.now()))
        return order

    async def unsubscribe(self, principal: Principal, order_id: str) -> bool:
        app = require_app(principal)
        order = await self.get(principal, order_id)
        return await self.store.unsubscribe(order.id, app.app_id)


def order_resource(
    order: Order, base_url: str, subscribed: bool | None = None, *, copy: bool = True
) -> dict[str, Any]:
    """The public Order resource (snake_case; Doshii's fields that make sense).

    ``copy=False``: its lists and dicts are the order's own (``Order.as_dict``), for an
    HTTP response serialized at once; otherwise a deep copy."""
    doc = order.to_dict() if copy else order.as_dict()
    doc.pop("previous_status", None)
    doc["deliveries"] = sorted(doc["deliveries"].values(), key=lambda x: x["created_at"])
    doc["uri"] = f"{base_url}/v1/orders/{order.id}"
    doc["log"] = f"{base_url}/v1/orders/{order.id}/events"
    if subscribed is not None:
        doc["subscribed"] = subscribed
    return doc
