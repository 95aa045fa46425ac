"""Commands and ``decide``: which events a command produces on an order. Pure.

``decide(order, command)`` never mutates; it returns a :class:`Decision` whose events the
service numbers and stores in one transaction. Ids and times come in on the command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ordercast.domain import events as ev
from ordercast.domain.events import Decision
from ordercast.domain.lifecycle import (
    COMPLETION_HOW,
    COURIER_IMPLIES_ORDER,
    ORDER_TERMINAL,
    CourierStatus,
    Move,
    OrderStatus,
    classify_courier_move,
    classify_order_move,
    courier_status_from_text,
    order_status_from_text,
)
from ordercast.domain.order import Order
from ordercast.domain.pos_flow import POS_COMMANDS, PosCommand, decide_pos
from ordercast.domain.provider_codes import lookup_provider_code
from ordercast.errors import InvalidTransition, NotFound, ValidationError


@dataclass(frozen=True, slots=True)
class Transition:
    to: str
    reason: str | None = None
    how: str | None = None
    errors: list[dict[str, Any]] | None = None
    occurred_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. total, fire_order_in_seconds


@dataclass(frozen=True, slots=True)
class Confirm:
    confirmation: int
    reason: str | None = None
    adjustment: dict[str, Any] | None = None  # time, order_date, eta, items, options
    available_eta: str | None = None  # computed by the service from the adjustment
    required_at: str | None = None


@dataclass(frozen=True, slots=True)
class Notify:
    notification_id: str
    type: str
    message: str


@dataclass(frozen=True, slots=True)
class AddNote:
    text: str


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: str | None
    by: str
    request_only: bool = False


@dataclass(frozen=True, slots=True)
class StartDelivery:
    delivery_id: str
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class CourierUpdate:
    delivery_id: str
    status: str | None = None
    occurred_at: str | None = None
    proof: str | dict[str, Any] | None = None  # seed 002 sends a string (base64 image)
    refund: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    eta: str | None = None
    details: dict[str, Any] | None = None  # provider details (driver, tracking URL, …)


@dataclass(frozen=True, slots=True)
class RecordError:
    errors: list[dict[str, Any]]


Command = (
    Transition
    | Confirm
    | Notify
    | AddNote
    | Cancel
    | StartDelivery
    | CourierUpdate
    | RecordError
    | PosCommand  # the POS flow's commands: domain/pos_flow.py
)


REOPENED = "reopened"


def _invalid(order: Order, requested: str, why: str) -> InvalidTransition:
    return InvalidTransition(
        f"cannot move order {order.id} from '{order.status}' to '{requested}': {why}",
        current=order.status,
        requested=requested,
    )


def _order_move(
    order: Order,
    target: OrderStatus,
    data: dict[str, Any],
    occurred_at: str | None,
) -> Decision:
    move = classify_order_move(order.state, target)
    if move is Move.APPLY:
        payload = {"from": order.status, **{k: v for k, v in data.items() if v is not None}}
        return Decision(
            [ev.NewEvent(ev.order_state_event(target), payload, occurred_at)], True, move
        )
    if move is Move.STALE:
        payload = {"requested": target.value, "current": order.status}
        if data.get("reason"):
            payload["reason"] = data["reason"]
        detail = f"order is already '{order.status}', past '{target.value}'; recorded, not applied"
        return Decision(
            [ev.NewEvent(ev.ORDER_STALE_UPDATE, payload, occurred_at)], False, move, detail
        )
    if move is Move.DUPLICATE:
        return Decision([], False, move, f"order is already '{order.status}'")
    raise _invalid(order, target.value, f"'{order.status}' is final")


def _transition(order: Order, cmd: Transition) -> Decision:
    if cmd.to == REOPENED:
        if not order.is_closed:
            raise _invalid(order, REOPENED, "only a closed order can be reopened")
        back_to = order.previous_status or OrderStatus.ACCEPTED.value
        reopened: dict[str, Any] = {"from": order.status, "to": back_to}
        if cmd.reason:
            reopened["reason"] = cmd.reason
        return Decision(
            [ev.NewEvent(ev.ORDER_REOPENED, reopened, cmd.occurred_at)], True, Move.APPLY
        )
    target = order_status_from_text(cmd.to)
    if target is None:
        valid = ", ".join([s.value for s in OrderStatus] + [REOPENED])
        raise ValidationError(f"unknown order status '{cmd.to}'; use one of: {valid}", field="to")
    data: dict[str, Any] = {"reason": cmd.reason, **cmd.extra}
    if target is OrderStatus.COMPLETED:
        how = cmd.how or "closed"
        if how not in COMPLETION_HOW:
            raise ValidationError(
                f"unknown completion 'how' '{how}'; "
                f"use one of: {', '.join(sorted(COMPLETION_HOW))}",
                field="how",
            )
        data["how"] = how
    elif cmd.how is not None:
        raise ValidationError("'how' applies only to a move to 'completed'", field="how")
    if cmd.errors:
        data["errors"] = cmd.errors
    return _order_move(order, target, data, cmd.occurred_at)


def _confirm(order: Order, cmd: Confirm) -> Decision:
    if cmd.confirmation == 1:
        return _order_move(order, OrderStatus.ACCEPTED, {"confirmation": 1}, None)
    if cmd.confirmation == 3:
        if not cmd.reason:
            raise ValidationError("a rejection (confirmation 3) needs a 'reason'", field="reason")
        return _order_move(
            order, OrderStatus.REJECTED, {"confirmation": 3, "reason": cmd.reason}, None
        )
    if cmd.confirmation != 2:
        raise ValidationError(
            "confirmation must be 1 (confirmed), 2 (adjusted) or 3 (rejected)",
            field="confirmation",
        )
    adj = cmd.adjustment or {}
    if not any(
        adj.get(k) not in (None, [], "") for k in ("time", "order_date", "eta", "items", "options")
    ):
        raise ValidationError(
            "an adjustment (confirmation 2) needs 'adjustment' with at least one of "
            "time, order_date, eta, items, options",
            field="adjustment",
        )
    if order.is_closed:
        raise _invalid(order, "adjusted", f"'{order.status}' is final")
    known = {i.get("uuid") for i in order.items}
    unknown = [i for i in adj.get("items") or [] if i not in known]
    if unknown:
        raise ValidationError(
            f"adjustment removes items this order does not have: {', '.join(map(str, unknown))}",
            field="adjustment.items",
        )
    out: list[ev.NewEvent] = []
    if classify_order_move(order.state, OrderStatus.ACCEPTED) is Move.APPLY:
        out.append(
            ev.NewEvent(
                ev.order_state_event(OrderStatus.ACCEPTED),
                {"from": order.status, "confirmation": 2},
            )
        )
    data: dict[str, Any] = {
        "confirmation": 2,
        "adjustment": {k: v for k, v in adj.items() if v is not None},
        "removed_items": list(adj.get("items") or []),
        "removed_options": list(adj.get("options") or []),
    }
    if cmd.available_eta:
        data["available_eta"] = cmd.available_eta
    if cmd.required_at:
        data["required_at"] = cmd.required_at
    out.append(ev.NewEvent(ev.ORDER_ADJUSTED, data))
    return Decision(out, True, Move.APPLY)


def _cancel(order: Order, cmd: Cancel) -> Decision:
    if cmd.request_only:
        if order.is_closed:
            raise _invalid(order, "cancel_requested", f"'{order.status}' is final")
        data = {"reason": cmd.reason, "by": cmd.by}
        return Decision([ev.NewEvent(ev.ORDER_CANCEL_REQUESTED, data)], True, Move.APPLY)
    return _order_move(order, OrderStatus.CANCELLED, {"reason": cmd.reason, "by": cmd.by}, None)


def resolve_courier_status(value: str) -> tuple[CourierStatus | None, str | None]:
    """A canonical courier status, or a seed-000 provider string → (status, provider string)."""
    canonical = courier_status_from_text(value)
    if canonical is not None:
        return canonical, None
    row = lookup_provider_code(value)
    if row is None:
        raise ValidationError(
            f"unknown courier status '{value}'; use a canonical status "
            f"({', '.join(s.value for s in CourierStatus)}) or an Open Dining provider "
            "string such as 'courier_picked_up'",
            field="status",
        )
    return row.courier_status, value


def _courier(order: Order, cmd: CourierUpdate) -> Decision:
    delivery = order.deliveries.get(cmd.delivery_id)
    if delivery is None:
        raise NotFound(f"delivery {cmd.delivery_id} not found")
    if cmd.status is None and not any((cmd.proof, cmd.refund, cmd.location, cmd.eta, cmd.details)):
        raise ValidationError(
            "give a 'status', or at least one of proof, refund, location, eta", field="status"
        )
    out: list[ev.NewEvent] = []
    base = {"delivery_id": cmd.delivery_id}
    details = {"details": dict(cmd.details)} if cmd.details else {}
    applied = False
    outcome = Move.APPLY
    detail: str | None = None
    if cmd.status is not None:
        target, provider_status = resolve_courier_status(cmd.status)
        extra = {"provider_status": provider_status} if provider_status else {}
        if target is None:
            out.append(ev.NewEvent(ev.DELIVERY_UPDATED, {**base, **extra}, cmd.occurred_at))
            applied = True
        else:
            current = CourierStatus(delivery.status)
            move = classify_courier_move(current, target)
            outcome = move
            if move is Move.INVALID:
                raise InvalidTransition(
                    f"cannot move delivery {delivery.id} from '{current.value}' to "
                    f"'{target.value}'",
                    current=current.value,
                    requested=target.value,
                )
            if move is Move.APPLY:
                applied = True
                out.append(
                    ev.NewEvent(
                        ev.courier_state_event(target),
                        {**base, "from": current.value, **extra, **details},
                        cmd.occurred_at,
                    )
                )
                details = {}
                coupled = COURIER_IMPLIES_ORDER.get(target)
                if coupled is not None:
                    order_target, how = coupled
                    if classify_order_move(order.state, order_target) is Move.APPLY:
                        data: dict[str, Any] = {"from": order.status, "cause": "delivery", **base}
                        if how:
                            data["how"] = how
                        out.append(
                            ev.NewEvent(ev.order_state_event(order_target), data, cmd.occurred_at)
                        )
            elif move is Move.STALE:
                detail = f"delivery is already '{current.value}'; recorded, not applied"
                out.append(
                    ev.NewEvent(
                        ev.DELIVERY_STALE_UPDATE,
                        {**base, "requested": target.value, "current": current.value, **extra},
                        cmd.occurred_at,
                    )
                )
            elif provider_status and provider_status != delivery.provider_status:
                # Same courier state, new provider detail ("Heading To Pickup" after
                # "Assigned"): record it so trackers can show it.
                applied = True
                out.append(ev.NewEvent(ev.DELIVERY_UPDATED, {**base, **extra}, cmd.occurred_at))
            else:
                detail = f"delivery is already '{current.value}'"
    if details:  # not carried by a state event: a fact of its own
        out.append(ev.NewEvent(ev.DELIVERY_UPDATED, {**base, **details}, cmd.occurred_at))
        applied = True
    facts = (
        (cmd.location, ev.DELIVERY_LOCATION_UPDATED, "location"),
        (cmd.eta, ev.DELIVERY_ETA_UPDATED, "eta"),
        (cmd.proof, ev.DELIVERY_PROOF_ADDED, "proof"),
        (cmd.refund, ev.DELIVERY_REFUND_REQUESTED, "refund"),
    )
    for value, etype, key in facts:
        if value is not None:
            out.append(ev.NewEvent(etype, {**base, key: value}, cmd.occurred_at))
            applied = True
    return Decision(out, applied, outcome if cmd.status is not None else Move.APPLY, detail)


def decide(order: Order, cmd: Command) -> Decision:
    """The events ``cmd`` produces on ``order``; raises an OrdercastError when refused."""
    if isinstance(cmd, POS_COMMANDS):
        return decide_pos(order, cmd)
    if isinstance(cmd, Transition):
        return _transition(order, cmd)
    if isinstance(cmd, Confirm):
        return _confirm(order, cmd)
    if isinstance(cmd, Cancel):
        return _cancel(order, cmd)
    if isinstance(cmd, Notify):
        data = {"notification_id": cmd.notification_id, "type": cmd.type, "message": cmd.message}
        return Decision([ev.NewEvent(ev.ORDER_NOTIFICATION, data)], True, Move.APPLY)
    if isinstance(cmd, AddNote):
        return Decision([ev.NewEvent(ev.ORDER_NOTE, {"text": cmd.text})], True, Move.APPLY)
    if isinstance(cmd, RecordError):
        return Decision([ev.NewEvent(ev.ORDER_ERROR, {"errors": cmd.errors})], True, Move.APPLY)
    if isinstance(cmd, StartDelivery):
        if order.state in ORDER_TERMINAL:
            raise _invalid(order, "delivery requested", f"'{order.status}' is final")
        if cmd.delivery_id in order.deliveries:
            raise ValidationError(f"delivery {cmd.delivery_id} already exists", field="id")
        requested: dict[str, Any] = {"delivery_id": cmd.delivery_id, "from": None}
        if cmd.provider:
            requested["provider"] = cmd.provider
        return Decision(
            [ev.NewEvent(ev.courier_state_event(CourierStatus.REQUESTED), requested)],
            True,
            Move.APPLY,
        )
    return _courier(order, cmd)
