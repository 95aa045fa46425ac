"""Canonical event types and the shape of an event before and after it is stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ordercast.domain.lifecycle import CourierStatus, Move, OrderStatus

ORDER_CREATED: Final = "order.created"
ORDER_STALE_UPDATE: Final = "order.stale_update"
ORDER_ADJUSTED: Final = "order.adjusted"
ORDER_ETA_UPDATED: Final = "order.eta_updated"
ORDER_CANCEL_REQUESTED: Final = "order.cancel_requested"
ORDER_PAYMENT_UPDATED: Final = "order.payment_updated"
ORDER_NOTE: Final = "order.note"
ORDER_NOTIFICATION: Final = "order.notification"
ORDER_ERROR: Final = "order.error"
ORDER_REOPENED: Final = "order.reopened"
ORDER_FIRE_REQUESTED: Final = "order.fire_requested"  # POS flow: send the fire webhook

DELIVERY_STALE_UPDATE: Final = "delivery.stale_update"
DELIVERY_UPDATED: Final = "delivery.updated"  # provider status that moves no state
DELIVERY_LOCATION_UPDATED: Final = "delivery.location_updated"
DELIVERY_ETA_UPDATED: Final = "delivery.eta_updated"
DELIVERY_PROOF_ADDED: Final = "delivery.proof_added"
DELIVERY_REFUND_REQUESTED: Final = "delivery.refund_requested"


def order_state_event(status: OrderStatus) -> str:
    """``order.accepted``, ``order.completed``, ...: the event that moves an order there."""
    return f"order.{status.value}"


def courier_state_event(status: CourierStatus) -> str:
    return f"delivery.{status.value}"


ORDER_STATE_EVENTS: Final[dict[str, OrderStatus]] = {
    order_state_event(s): s for s in OrderStatus if s is not OrderStatus.DRAFT
}
COURIER_STATE_EVENTS: Final[dict[str, CourierStatus]] = {
    courier_state_event(s): s for s in CourierStatus
}

ORDER_FACTS: Final[frozenset[str]] = frozenset(
    {
        ORDER_STALE_UPDATE,
        ORDER_ADJUSTED,
        ORDER_ETA_UPDATED,
        ORDER_CANCEL_REQUESTED,
        ORDER_PAYMENT_UPDATED,
        ORDER_NOTE,
        ORDER_NOTIFICATION,
        ORDER_ERROR,
        ORDER_REOPENED,
        ORDER_FIRE_REQUESTED,
    }
)
DELIVERY_FACTS: Final[frozenset[str]] = frozenset(
    {
        DELIVERY_STALE_UPDATE,
        DELIVERY_UPDATED,
        DELIVERY_LOCATION_UPDATED,
        DELIVERY_ETA_UPDATED,
        DELIVERY_PROOF_ADDED,
        DELIVERY_REFUND_REQUESTED,
    }
)

ALL_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {ORDER_CREATED}
    | set(ORDER_STATE_EVENTS)
    | set(COURIER_STATE_EVENTS)
    | ORDER_FACTS
    | DELIVERY_FACTS
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event decided by the domain, not yet numbered or stored."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    occurred_at: str | None = None  # source clock (ISO 8601); None = when recorded


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as stored in an order's stream."""

    event_id: str
    order_id: str
    seq: int
    type: str
    status: str  # the order's status right after this event
    occurred_at: str
    recorded_at: str
    actor: dict[str, Any]
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "order_id": self.order_id,
            "seq": self.seq,
            "type": self.type,
            "status": self.status,
            "occurred_at": self.occurred_at,
            "recorded_at": self.recorded_at,
            "actor": self.actor,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EventRecord:
        return cls(
            event_id=d["event_id"],
            order_id=d["order_id"],
            seq=int(d["seq"]),
            type=d["type"],
            status=d["status"],
            occurred_at=d["occurred_at"],
            recorded_at=d["recorded_at"],
            actor=dict(d["actor"]),
            data=dict(d["data"]),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What a command decides (``decide.decide`` and ``pos_flow.decide_pos`` alike): the
    events to append, whether the state (or a fact) changed as asked, how the requested
    move was classified, and why when nothing changed."""

    events: list[NewEvent]
    applied: bool
    outcome: Move
    detail: str | None = None
