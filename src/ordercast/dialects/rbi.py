"""The ``rbi`` webhook dialect: RBI's order event webhook (seed 001).

Every lifecycle status RBI knows goes out as
``{"eventType": "ORDER_EVENT", "orderId", "storeId", "status", "eventTime"}``: CREATED,
PRICED, COMMITTED, PREPARING, PREPARED, DONE, CANCELED, ERROR. Canonical moves RBI has no
status for (submitted, handed_off) and facts send nothing. ``ERROR`` carries the order's
``errors`` (``[{code: MENU|STORE|TIMEOUT|UNKNOWN, message}]``) when there are any.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ordercast.dialects import Target, WireMessage, rbi_pos
from ordercast.domain.events import EventRecord
from ordercast.domain.lifecycle import ORDER_RANK, OrderStatus

NAME: Final = "rbi"
EVENT_TYPE: Final = "ORDER_EVENT"

# Seed 001's lifecycle statuses, in order.
STATUSES: Final[tuple[str, ...]] = (
    "CREATED",
    "PRICED",
    "COMMITTED",
    "PREPARING",
    "PREPARED",
    "DONE",
    "CANCELED",
    "ERROR",
)

# canonical event → RBI status. ``order.held`` is COMMITTED-and-not-fired: it says
# COMMITTED only when the order skipped ``accepted`` (otherwise COMMITTED was already sent).
STATUS_OF_EVENT: Final[dict[str, str]] = {
    "order.created": "CREATED",
    "order.priced": "PRICED",
    "order.accepted": "COMMITTED",
    "order.held": "COMMITTED",
    "order.preparing": "PREPARING",
    "order.ready": "PREPARED",
    "order.completed": "DONE",
    "order.cancelled": "CANCELED",
    "order.rejected": "ERROR",
    "order.failed": "ERROR",
}

EVENT_TYPES: Final[frozenset[str]] = frozenset({EVENT_TYPE}) | rbi_pos.REQUEST_TYPES


def _skipped_accepted(event: EventRecord) -> bool:
    before = str(event.data.get("from"))
    try:
        return ORDER_RANK[OrderStatus(before)] < ORDER_RANK[OrderStatus.ACCEPTED]
    except ValueError:
        return True


def render(event: EventRecord, order: Mapping[str, Any], target: Target) -> list[WireMessage]:
    # POS apps also get the POS flow's PRICE/COMMIT/FIRE_ORDER requests (dialects/rbi_pos.py).
    return [*rbi_pos.render(event, order, target), *_order_event(event, order, target)]


def _order_event(event: EventRecord, order: Mapping[str, Any], target: Target) -> list[WireMessage]:
    status = STATUS_OF_EVENT.get(event.type)
    if status is None:
        return []
    if event.type == "order.held" and not _skipped_accepted(event):
        return []
    payload: dict[str, Any] = {
        "eventType": EVENT_TYPE,
        "orderId": event.order_id,
        "storeId": order.get("location_id"),
        "status": status,
        "eventTime": event.occurred_at,
    }
    if status == "ERROR":
        errors = event.data.get("errors") or order.get("errors") or []
        if errors:
            payload["errors"] = [
                {"code": str(e.get("code", "UNKNOWN")).upper(), "message": e.get("message", "")}
                for e in errors
                if isinstance(e, Mapping)
            ]
    return [WireMessage(EVENT_TYPE, payload)]
