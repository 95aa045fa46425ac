"""The ``ordatic`` webhook dialect: Ordatic's order-* and rider-* events (seed 002).

Body: ``{"eventType", "storeId", "data": {"orderId", …}}``. Which app kinds receive which
event is seed 002's ✔️/✖️ table, kept verbatim in :data:`APP_SCOPE`; which canonical events
produce which Ordatic event is :data:`RULES`. ``rider-proof-delivery`` adds
``data.proofDelivery`` (a string), ``rider-refund`` adds ``data.refund`` (the refund object,
camelCase as the seed spells it). Apps of kind ``kds`` have no Ordatic column: they get
nothing in this dialect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from ordercast.dialects import Target, WireMessage
from ordercast.dialects._casing import camelize
from ordercast.domain.events import EventRecord
from ordercast.domain.lifecycle import ORDER_RANK, OrderStatus

NAME: Final = "ordatic"

# Seed 002, "Channel | Pos | Riders | Loyalty" per event (✔️ = receives it).
#                                 channel pos    rider  loyalty
APP_SCOPE: Final[dict[str, tuple[bool, bool, bool, bool]]] = {
    "order-accepted": (False, True, False, False),
    "order-in-kitchen": (True, False, True, True),
    "order-ready-to-pick-up": (True, False, True, False),
    "order-picked-up": (True, False, False, False),
    "order-served": (True, False, False, False),
    "order-canceled": (False, True, True, True),
    "rider-created": (True, True, False, False),
    "rider-picking": (True, True, False, False),
    "rider-delivering": (True, True, False, False),
    "rider-completed": (True, True, False, False),
    "rider-error": (True, True, False, False),
    "rider-proof-delivery": (True, False, False, False),
    "rider-refund": (True, False, False, False),
}
_KIND_COLUMN: Final[dict[str, int]] = {"channel": 0, "pos": 1, "rider": 2, "loyalty": 3}

EVENT_TYPES: Final[frozenset[str]] = frozenset(APP_SCOPE)


def _rank(status: object) -> int:
    try:
        return ORDER_RANK[OrderStatus(str(status))]
    except ValueError:
        return -1


def _always(_e: EventRecord, _o: Mapping[str, Any]) -> bool:
    return True


def _created_open(e: EventRecord, o: Mapping[str, Any]) -> bool:
    """An order created already submitted (or further): the POS's new-order notice."""
    status = e.data.get("status", e.status)
    return ORDER_RANK[OrderStatus.SUBMITTED] <= _rank(status) < ORDER_RANK[OrderStatus.COMPLETED]


def _created_accepted(e: EventRecord, o: Mapping[str, Any]) -> bool:
    status = e.data.get("status", e.status)
    return ORDER_RANK[OrderStatus.ACCEPTED] <= _rank(status) < ORDER_RANK[OrderStatus.COMPLETED]


def _skipped_accepted(e: EventRecord, o: Mapping[str, Any]) -> bool:
    """``order-in-kitchen`` "if not sent yet": the order jumped past ``accepted``."""
    return _rank(e.data.get("from")) < ORDER_RANK[OrderStatus.ACCEPTED]


def _delivery_by_location(e: EventRecord, o: Mapping[str, Any]) -> bool:
    return o.get("type") == "delivery"


def _takeaway(e: EventRecord, o: Mapping[str, Any]) -> bool:
    how = e.data.get("how")
    return how == "picked_up" or (how is None and o.get("type") == "pickup")


def _at_table(e: EventRecord, o: Mapping[str, Any]) -> bool:
    how = e.data.get("how")
    return how == "served" or (how is None and o.get("type") == "dine_in")


def _skipped_assigned(e: EventRecord, o: Mapping[str, Any]) -> bool:
    return e.data.get("from") in (None, "requested", "unassigned")


Condition = Callable[[EventRecord, Mapping[str, Any]], bool]

# canonical event type → [(Ordatic eventType, condition)]. research/platforms.md §3.5.
RULES: Final[dict[str, tuple[tuple[str, Condition], ...]]] = {
    "order.created": (
        ("order-accepted", _created_open),
        ("order-in-kitchen", _created_accepted),
    ),
    "order.submitted": (("order-accepted", _always),),
    "order.accepted": (("order-in-kitchen", _always),),
    "order.held": (("order-in-kitchen", _skipped_accepted),),
    "order.preparing": (("order-in-kitchen", _skipped_accepted),),
    "order.ready": (("order-ready-to-pick-up", _delivery_by_location),),
    "order.completed": (("order-picked-up", _takeaway), ("order-served", _at_table)),
    "order.cancelled": (("order-canceled", _always),),
    "order.rejected": (("order-canceled", _always),),
    "order.failed": (("order-canceled", _always),),
    "delivery.requested": (("rider-created", _always),),
    "delivery.assigned": (("rider-picking", _always),),
    "delivery.at_pickup": (("rider-picking", _skipped_assigned),),
    "delivery.picked_up": (("rider-delivering", _always),),
    "delivery.delivered": (("rider-completed", _always),),
    "delivery.failed": (("rider-error", _always),),
    "delivery.cancelled": (("rider-error", _always),),
    "delivery.returning": (("rider-error", _always),),
    "delivery.proof_added": (("rider-proof-delivery", _always),),
    "delivery.refund_requested": (("rider-refund", _always),),
}

_PROOF_KEYS: Final = ("proof_delivery", "proofDelivery", "image", "photo", "signature", "url")


def receives(event_type: str, app_kind: str) -> bool:
    column = _KIND_COLUMN.get(app_kind)
    return column is not None and APP_SCOPE[event_type][column]


def proof_string(proof: Any) -> str:
    """Seed 002 sends proof of delivery as one string (e.g. Uber Direct's base64 PNG)."""
    if isinstance(proof, str):
        return proof
    if isinstance(proof, Mapping):
        for key in _PROOF_KEYS:
            if isinstance(proof.get(key), str):
                return str(proof[key])
    return json.dumps(proof, sort_keys=True, separators=(",", ":"))


def render(event: EventRecord, order: Mapping[str, Any], target: Target) -> list[WireMessage]:
    out: list[WireMessage] = []
    for name, condition in RULES.get(event.type, ()):
        if not receives(name, target.app_kind) or not condition(event, order):
            continue
        data: dict[str, Any] = {"orderId": event.order_id}
        if name == "rider-proof-delivery":
            data["proofDelivery"] = proof_string(event.data.get("proof"))
        elif name == "rider-refund":
            data["refund"] = camelize(event.data.get("refund") or {})
        out.append(
            WireMessage(
                name, {"eventType": name, "storeId": order.get("location_id"), "data": data}
            )
        )
    return out
