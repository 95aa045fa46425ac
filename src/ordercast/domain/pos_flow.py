"""The POS flow (RBI partner POS API, seed 001): price → commit → fire, as pure rules.

An order in the POS flow (``Order.pos.flow``, decided once when the order is created at a
location whose POS app has an ``rbi`` webhook endpoint) goes through phases derived from
its status and whether it was fired:

=========  ===========================  ============================================
phase      order status                 waiting for
=========  ===========================  ============================================
price      draft                        the price callback (PRICED | ERROR)
commit     priced, submitted            the commit callback (COMMITTED | ERROR)
held       accepted, held (not fired)   a fire: the timer, or ``POST /orders/{id}/fire``
fire       accepted, held (fired)       the fire callback (PREPARING | ERROR)
kitchen    preparing … handed_off       order events (PREPARED, DONE, CANCELED, …)
closed     completed, failed, …         nothing
=========  ===========================  ============================================

The webhooks themselves are rendered by ``dialects/rbi_pos.py`` from the events decided
here: ``order.created`` (draft) → PRICE_ORDER, ``order.submitted`` → COMMIT_ORDER,
``order.fire_requested`` → FIRE_ORDER. A fire is a fact recorded at most once per order.

Timers (durable, stored beside the order in the same transaction) are planned by
:func:`plan_timers` from the order after a change and the events of that change. Ids and
times come in on the commands; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from ordercast.domain import events as ev
from ordercast.domain.events import Decision
from ordercast.domain.isotime import iso_plus
from ordercast.domain.lifecycle import (
    ORDER_TERMINAL,
    Move,
    OrderStatus,
    classify_order_move,
)
from ordercast.errors import InvalidTransition, ValidationError, WrongPhase

POS_APP_KIND: Final = "pos"
POS_DIALECT: Final = "rbi"

# POSOrderError codes (RBI channel OpenAPI).
ERROR_CODES: Final[tuple[str, ...]] = ("MENU", "STORE", "TIMEOUT", "UNKNOWN")
# A commit refused for these reasons is the venue declining (rejected), not a failure.
REJECTING_CODES: Final[frozenset[str]] = frozenset({"MENU", "STORE"})

FIRE_BY: Final[tuple[str, ...]] = ("timer", "app", "channel")


class PosPhase(StrEnum):
    PRICE = "price"
    COMMIT = "commit"
    HELD = "held"
    FIRE = "fire"
    KITCHEN = "kitchen"
    CLOSED = "closed"


class Callback(StrEnum):
    PRICE = "price"
    COMMIT = "commit"
    FIRE = "fire"


# callback → (its success status, the phase that waits for it)
CALLBACKS: Final[dict[Callback, tuple[str, PosPhase]]] = {
    Callback.PRICE: ("PRICED", PosPhase.PRICE),
    Callback.COMMIT: ("COMMITTED", PosPhase.COMMIT),
    Callback.FIRE: ("PREPARING", PosPhase.FIRE),
}

# Order event endpoint: RBI status → canonical state (None: acknowledged, ignored).
ORDER_EVENT_STATUS: Final[dict[str, OrderStatus | None]] = {
    "CREATED": OrderStatus.DRAFT,
    "PRICED": OrderStatus.PRICED,
    "COMMITTED": None,  # "not required to send that status again" (seed 001)
    "PREPARING": OrderStatus.PREPARING,
    "PREPARED": OrderStatus.READY,
    "DONE": OrderStatus.COMPLETED,
    "CANCELED": OrderStatus.CANCELLED,
    "ERROR": OrderStatus.FAILED,
}


class TimerKind(StrEnum):
    FIRE = "fire"  # fireOrderInSeconds elapsed: fire the order
    PRICE_DEADLINE = "price_deadline"  # no price callback in time: fail (TIMEOUT)
    COMMIT_DEADLINE = "commit_deadline"
    FIRE_DEADLINE = "fire_deadline"


# Each timer is only meaningful while the order is in this phase.
TIMER_PHASE: Final[dict[TimerKind, PosPhase]] = {
    TimerKind.FIRE: PosPhase.HELD,
    TimerKind.PRICE_DEADLINE: PosPhase.PRICE,
    TimerKind.COMMIT_DEADLINE: PosPhase.COMMIT,
    TimerKind.FIRE_DEADLINE: PosPhase.FIRE,
}
DEADLINE_OF: Final[dict[TimerKind, Callback]] = {
    TimerKind.PRICE_DEADLINE: Callback.PRICE,
    TimerKind.COMMIT_DEADLINE: Callback.COMMIT,
    TimerKind.FIRE_DEADLINE: Callback.FIRE,
}


def phase_of(status: str, fired: bool) -> PosPhase:
    """The POS phase of an order in the flow, from its status and whether it was fired."""
    state = OrderStatus(status)
    if state in ORDER_TERMINAL:
        return PosPhase.CLOSED
    if state is OrderStatus.DRAFT:
        return PosPhase.PRICE
    if state in (OrderStatus.PRICED, OrderStatus.SUBMITTED):
        return PosPhase.COMMIT
    if state in (OrderStatus.ACCEPTED, OrderStatus.HELD):
        return PosPhase.FIRE if fired else PosPhase.HELD
    return PosPhase.KITCHEN


@dataclass(frozen=True, slots=True)
class PosState:
    """An order's POS-flow fields (``Order.pos``): whether it is in the flow (fixed at
    creation), its phase, the callbacks answered, and the fire. In the order's document
    and resource they are the flat keys of :data:`POS_KEYS`."""

    flow: bool = False
    phase: str | None = None
    callbacks: dict[str, str] = field(default_factory=dict)  # callback -> status answered
    fire_at: str | None = None  # when a held order is due to be fired (None: until asked)
    fired_at: str | None = None  # when the fire was requested (at most once)
    fired_by: str | None = None  # timer | app | channel

    def items(self) -> tuple[tuple[str, Any], ...]:
        """``(key, value)`` in the document's order (``callbacks`` is shared, not copied)."""
        return (
            ("pos_flow", self.flow),
            ("pos_phase", self.phase),
            ("pos_callbacks", self.callbacks),
            ("fire_at", self.fire_at),
            ("fired_at", self.fired_at),
            ("fired_by", self.fired_by),
        )

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PosState:
        return cls(
            flow=bool(doc.get("pos_flow", False)),
            phase=doc.get("pos_phase"),
            callbacks=dict(doc.get("pos_callbacks") or {}),
            fire_at=doc.get("fire_at"),
            fired_at=doc.get("fired_at"),
            fired_by=doc.get("fired_by"),
        )

    def evolved(self, status: str, event: ev.NewEvent, recorded_at: str) -> PosState:
        """The state after ``event``; ``status``: the order's status after it."""
        d = event.data
        fire_at, fired_at, fired_by = self.fire_at, self.fired_at, self.fired_by
        callbacks = self.callbacks
        if event.type == ev.ORDER_FIRE_REQUESTED:
            fired_at, fired_by = recorded_at, d.get("by")
        if event.type == ev.order_state_event(OrderStatus.HELD):
            fire_at = d.get("fire_at")
        callback = d.get("pos_callback")
        if callback:
            callbacks = {**callbacks, str(callback): str(d.get("pos_status"))}
        phase = phase_of(status, fired_at is not None).value if self.flow else self.phase
        return PosState(self.flow, phase, callbacks, fire_at, fired_at, fired_by)


POS_KEYS: Final = tuple(key for key, _ in PosState().items())


class PosOrder(Protocol):
    """What the POS rules read of an order (``domain.order.Order`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def state(self) -> OrderStatus: ...
    @property
    def fire_order_in_seconds(self) -> int | None: ...
    @property
    def pos(self) -> PosState: ...


def order_phase(order: PosOrder) -> PosPhase | None:
    if not order.pos.flow:
        return None
    return phase_of(order.status, order.pos.fired_at is not None)


# -- commands ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PosCallback:
    """A POS answer on a callback endpoint; ``at`` is when it arrived (ISO 8601)."""

    callback: Callback
    status: str
    at: str
    total: int | None = None
    errors: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class PosOrderEvent:
    """A status pushed by the POS on the order event endpoint."""

    status: str
    errors: list[dict[str, Any]] | None = None
    occurred_at: str | None = None


@dataclass(frozen=True, slots=True)
class RequestFire:
    """Ask for the fire webhook. ``by`` is timer, app or channel. A timer's request is
    lenient (a no-op when the order is not held); an app's is refused in the wrong phase."""

    by: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PosTimeout:
    """A callback deadline passed; fails the order if it still waits for that callback."""

    callback: Callback
    seconds: float


PosCommand = PosCallback | PosOrderEvent | RequestFire | PosTimeout
POS_COMMANDS: Final = (PosCallback, PosOrderEvent, RequestFire, PosTimeout)


def _noop(detail: str, outcome: Move = Move.DUPLICATE) -> Decision:
    return Decision([], False, outcome, detail)


def _state(target: OrderStatus, order_status: str, data: dict[str, Any]) -> ev.NewEvent:
    return ev.NewEvent(ev.order_state_event(target), {"from": order_status, **data})


def clean_errors(
    errors: Sequence[Mapping[str, Any]] | None, *, required: bool
) -> list[dict[str, Any]]:
    """POSOrderError list, codes upper-cased and checked."""
    out: list[dict[str, Any]] = []
    for i, err in enumerate(errors or []):
        code = str(err.get("code", "")).upper()
        if code not in ERROR_CODES:
            raise ValidationError(
                f"unknown error code '{err.get('code')}'; use one of: {', '.join(ERROR_CODES)}",
                field=f"errors.{i}.code",
            )
        out.append({"code": code, "message": str(err.get("message") or "")})
    if required and not out:
        raise ValidationError(
            "status ERROR needs 'errors': [{code: MENU|STORE|TIMEOUT|UNKNOWN, message}]",
            field="errors",
        )
    return out


def _wrong_phase(order: PosOrder, phase: PosPhase | None, why: str) -> WrongPhase:
    where = f"phase '{phase.value}'" if phase else "no POS flow"
    return WrongPhase(
        f"order {order.id} is in {where} (status '{order.status}'): {why}",
        phase=phase.value if phase else None,
        order_status=order.status,  # not "status": problem+json's own field
    )


def _not_in_flow(order: PosOrder) -> WrongPhase:
    return _wrong_phase(
        order,
        None,
        "it was not created at a location whose POS app has an 'rbi' webhook endpoint",
    )


def _callback(order: PosOrder, cmd: PosCallback) -> Decision:
    success, waiting_phase = CALLBACKS[cmd.callback]
    status = cmd.status.upper()
    if status not in (success, "ERROR"):
        raise ValidationError(
            f"the {cmd.callback.value} callback status is {success} or ERROR, not '{cmd.status}'",
            field="status",
        )
    errors = clean_errors(cmd.errors, required=status == "ERROR")
    if status == success and errors:
        raise ValidationError(
            f"a successful {cmd.callback.value} callback ({success}) carries no errors; "
            "send status ERROR instead",
            field="errors",
        )
    if cmd.total is not None and (cmd.callback is not Callback.PRICE or status != success):
        raise ValidationError("'total' belongs to a PRICED price callback", field="total")
    if not order.pos.flow:
        raise _not_in_flow(order)
    phase = phase_of(order.status, order.pos.fired_at is not None)
    answered = order.pos.callbacks.get(cmd.callback.value)
    if answered is not None:
        if answered == status:
            return _noop(f"the {cmd.callback.value} callback {status} was already received")
        raise _wrong_phase(
            order, phase, f"the {cmd.callback.value} callback was already answered {answered}"
        )
    if phase is not waiting_phase:
        raise _wrong_phase(order, phase, f"it is not waiting for the {cmd.callback.value} callback")
    marker = {"pos_callback": cmd.callback.value, "pos_status": status}
    if status == "ERROR":
        target = OrderStatus.FAILED
        if cmd.callback is Callback.COMMIT and any(e["code"] in REJECTING_CODES for e in errors):
            target = OrderStatus.REJECTED
        data = {
            **marker,
            "reason": f"pos_{cmd.callback.value}_error",
            "code": errors[0]["code"],
            "errors": errors,
        }
        return Decision([_state(target, order.status, data)], True, Move.APPLY)
    out: list[ev.NewEvent] = []
    if cmd.callback is Callback.PRICE:
        priced: dict[str, Any] = dict(marker)
        if cmd.total is not None:
            if cmd.total < 0:
                raise ValidationError("'total' is in cents, 0 or more", field="total")
            priced["total"] = cmd.total
        out.append(_state(OrderStatus.PRICED, order.status, priced))
        # "submitted" = the commit webhook is sent (research §3.4): same transaction.
        submitted = {"fire_order_in_seconds": order.fire_order_in_seconds}
        out.append(_state(OrderStatus.SUBMITTED, OrderStatus.PRICED.value, submitted))
    elif cmd.callback is Callback.COMMIT:
        fois = order.fire_order_in_seconds
        out.append(
            _state(OrderStatus.ACCEPTED, order.status, {**marker, "fire_order_in_seconds": fois})
        )
        if fois == 0:
            out.append(
                ev.NewEvent(ev.ORDER_FIRE_REQUESTED, {"by": "timer", "fire_order_in_seconds": 0})
            )
        else:
            fire_at = None if fois is None else iso_plus(cmd.at, fois)
            held = {"fire_order_in_seconds": fois, "fire_at": fire_at}
            out.append(_state(OrderStatus.HELD, OrderStatus.ACCEPTED.value, held))
    else:
        out.append(_state(OrderStatus.PREPARING, order.status, marker))
    return Decision(out, True, Move.APPLY)


def _order_event(order: PosOrder, cmd: PosOrderEvent) -> Decision:
    status = cmd.status.upper()
    if status not in ORDER_EVENT_STATUS:
        raise ValidationError(
            f"unknown order event status '{cmd.status}'; use one of: "
            f"{', '.join(ORDER_EVENT_STATUS)}",
            field="status",
        )
    target = ORDER_EVENT_STATUS[status]
    if target is None:
        return _noop("COMMITTED is answered on the commit callback; ignored here")
    errors = clean_errors(cmd.errors, required=False)
    move = classify_order_move(order.state, target)
    data: dict[str, Any] = {"pos_status": status}
    if move is Move.APPLY:
        if target is OrderStatus.COMPLETED:
            data["how"] = "closed"
        elif target is OrderStatus.CANCELLED:
            data.update(by="venue", reason="pos_canceled")
        elif target is OrderStatus.FAILED:
            data["reason"] = "pos_error"
            if errors:
                data.update(code=errors[0]["code"], errors=errors)
        event = ev.NewEvent(ev.order_state_event(target), {"from": order.status, **data})
        return Decision([ev.NewEvent(event.type, event.data, cmd.occurred_at)], True, move)
    if move is Move.STALE:
        stale = {"requested": target.value, "current": order.status, "pos_status": status}
        return Decision(
            [ev.NewEvent(ev.ORDER_STALE_UPDATE, stale, cmd.occurred_at)],
            False,
            move,
            f"order is already '{order.status}', past {status}; recorded, not applied",
        )
    if move is Move.DUPLICATE:
        return _noop(f"order is already '{order.status}'")
    raise InvalidTransition(
        f"cannot move order {order.id} from '{order.status}' to '{target.value}' ({status}): "
        f"'{order.status}' is final",
        current=order.status,
        requested=target.value,
    )


def _fire(order: PosOrder, cmd: RequestFire) -> Decision:
    if cmd.by not in FIRE_BY:
        raise ValidationError(f"a fire is requested by one of: {', '.join(FIRE_BY)}", field="by")
    lenient = cmd.by == "timer"
    if not order.pos.flow:
        if lenient:
            return _noop("order is not in the POS flow")
        raise _not_in_flow(order)
    if order.pos.fired_at is not None:
        return _noop(f"order was already fired (by {order.pos.fired_by} at {order.pos.fired_at})")
    phase = phase_of(order.status, False)
    if phase is PosPhase.HELD:
        data = {"by": cmd.by, **cmd.extra}
        return Decision([ev.NewEvent(ev.ORDER_FIRE_REQUESTED, data)], True, Move.APPLY)
    if lenient or phase is PosPhase.KITCHEN:
        return _noop(f"order is in phase '{phase.value}' (status '{order.status}'); not fired")
    why = (
        "an order can be fired once the POS committed it"
        if phase in (PosPhase.PRICE, PosPhase.COMMIT)
        else "a closed order cannot be fired"
    )
    raise _wrong_phase(order, phase, why)


def _timeout(order: PosOrder, cmd: PosTimeout) -> Decision:
    _, waiting_phase = CALLBACKS[cmd.callback]
    phase = order_phase(order)
    if phase is not waiting_phase or cmd.callback.value in order.pos.callbacks:
        return _noop(f"order is no longer waiting for the {cmd.callback.value} callback")
    message = f"the POS did not answer the {cmd.callback.value} webhook within {cmd.seconds:g} s"
    errors = [{"code": "TIMEOUT", "message": message}]
    data = {"reason": "pos_timeout", "code": "TIMEOUT", "errors": errors}
    return Decision([_state(OrderStatus.FAILED, order.status, data)], True, Move.APPLY)


def decide_pos(order: PosOrder, cmd: PosCommand) -> Decision:
    """The events a POS-flow command produces on ``order``; raises when refused."""
    if isinstance(cmd, PosCallback):
        return _callback(order, cmd)
    if isinstance(cmd, PosOrderEvent):
        return _order_event(order, cmd)
    if isinstance(cmd, RequestFire):
        return _fire(order, cmd)
    return _timeout(order, cmd)


# -- timers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimerPlan:
    """Timers to add (kind → due time, ISO 8601) and kinds whose pending timers end."""

    schedule: dict[TimerKind, str]
    cancel: frozenset[TimerKind]


def plan_timers(
    order: PosOrder, events: Sequence[ev.EventRecord], callback_timeout: float
) -> TimerPlan:
    """What a change does to the order's timers. ``order`` is the order after ``events``."""
    if not order.pos.flow:
        return TimerPlan({}, frozenset())
    phase = phase_of(order.status, order.pos.fired_at is not None)
    live = {kind for kind, p in TIMER_PHASE.items() if p is phase}
    schedule: dict[TimerKind, str] = {}
    for e in events:
        deadline: TimerKind | None = None
        if e.type == ev.ORDER_CREATED:
            first = e.data.get("status")
            if first == OrderStatus.DRAFT.value:
                deadline = TimerKind.PRICE_DEADLINE
            elif first == OrderStatus.SUBMITTED.value:
                deadline = TimerKind.COMMIT_DEADLINE
        elif e.type == ev.order_state_event(OrderStatus.SUBMITTED):
            deadline = TimerKind.COMMIT_DEADLINE
        elif e.type == ev.ORDER_FIRE_REQUESTED:
            deadline = TimerKind.FIRE_DEADLINE
        elif e.type == ev.order_state_event(OrderStatus.HELD) and e.data.get("fire_at"):
            schedule[TimerKind.FIRE] = str(e.data["fire_at"])
        if deadline is not None:
            schedule[deadline] = iso_plus(e.recorded_at, callback_timeout)
    schedule = {k: v for k, v in schedule.items() if k in live}
    return TimerPlan(schedule, frozenset(TimerKind) - live)


def command_for_timer(kind: TimerKind, callback_timeout: float) -> PosCommand:
    """What a due timer does."""
    if kind is TimerKind.FIRE:
        return RequestFire(by="timer")
    return PosTimeout(DEADLINE_OF[kind], callback_timeout)
