"""The ``doshii`` webhook dialect: ``order_created`` / ``order_updated`` (seed 003).

Sent only to apps subscribed to the order (``POST /v1/orders/{id}/subscription``, or
implicitly by creating or updating it). Body: ``{"type": "order_created" | "order_updated",
"data": <the Order resource in Doshii's shape>}`` — camelCase fields, Doshii's status
vocabulary (:data:`STATUS`), ``version`` as a string, ``uri`` and ``log`` links. Stale
updates (recorded, nothing changed) send nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ordercast.dialects import Target, WireMessage
from ordercast.dialects._casing import camelize
from ordercast.domain.events import (
    DELIVERY_STALE_UPDATE,
    ORDER_CREATED,
    ORDER_STALE_UPDATE,
    EventRecord,
)

NAME: Final = "doshii"
ORDER_CREATED_EVENT: Final = "order_created"
ORDER_UPDATED_EVENT: Final = "order_updated"
EVENT_TYPES: Final[frozenset[str]] = frozenset({ORDER_CREATED_EVENT, ORDER_UPDATED_EVENT})

# canonical order status → Doshii order status. Doshii has no kitchen states: an order
# stays "accepted" until it completes; "cancelled" by the venue is "venue_cancelled".
STATUS: Final[dict[str, str]] = {
    "draft": "pending",
    "priced": "pending",
    "submitted": "pending",
    "accepted": "accepted",
    "held": "accepted",
    "preparing": "accepted",
    "ready": "accepted",
    "handed_off": "accepted",
    "completed": "complete",
    "rejected": "rejected",
    "cancelled": "cancelled",
    "failed": "cancelled",
}

SILENT: Final[frozenset[str]] = frozenset({ORDER_STALE_UPDATE, DELIVERY_STALE_UPDATE})

_ITEM_FIELDS: Final[dict[str, str]] = {
    "uuid": "uuid",
    "pos_id": "posId",
    "name": "name",
    "quantity": "quantity",
    "description": "description",
    "unit_price": "unitPrice",
    "total_before_surcounts": "totalBeforeSurcounts",
    "total_after_surcounts": "totalAfterSurcounts",
    "tags": "tags",
    "menu_dir": "menuDir",
    "type": "type",
    "status": "status",
}


def doshii_status(order: Mapping[str, Any]) -> str:
    status = str(order.get("status"))
    if status == "cancelled" and (order.get("cancellation") or {}).get("by") == "venue":
        return "venue_cancelled"
    return STATUS.get(status, "pending")


def _item(item: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        doshii: item[ours] for ours, doshii in _ITEM_FIELDS.items() if ours in item
    }
    out.setdefault("type", "single")
    out["includedItems"] = camelize(item.get("included_items", []))
    out["surcounts"] = camelize(item.get("surcounts", []))
    out["options"] = camelize(item.get("options", []))
    return out


def order_resource(order: Mapping[str, Any]) -> dict[str, Any]:
    """Our Order resource in Doshii's field names and status vocabulary."""
    consumer = camelize(order.get("consumer") or {})
    doc: dict[str, Any] = {
        "id": order.get("id"),
        "locationId": order.get("location_id"),
        "status": doshii_status(order),
        "type": order.get("type"),
        "phase": order.get("phase"),
        "notes": order.get("notes"),
        "requiredAt": order.get("required_at"),
        "availableEta": order.get("available_eta"),
        "manuallyProcessed": False,
        "items": [_item(i) for i in order.get("items", [])],
        "unapprovedItems": [_item(i) for i in order.get("unapproved_items", [])],
        "surcounts": camelize(order.get("surcounts", [])),
        "consumer": consumer,
        "externalOrderRef": order.get("external_order_ref"),
        "posRef": order.get("pos_ref"),
        "createdAt": order.get("created_at"),
        "updatedAt": order.get("updated_at"),
        "transactions": [],
        "version": str(order.get("version")),
        "uri": order.get("uri"),
        "log": order.get("log"),
    }
    if order.get("rejection_code"):
        doc["rejectionCode"] = order["rejection_code"]
    if order.get("rejection_reason"):
        doc["rejectionReason"] = order["rejection_reason"]
    return doc


def render(event: EventRecord, order: Mapping[str, Any], target: Target) -> list[WireMessage]:
    if not target.subscribed or event.type in SILENT:
        return []
    name = ORDER_CREATED_EVENT if event.type == ORDER_CREATED else ORDER_UPDATED_EVENT
    return [WireMessage(name, {"type": name, "data": order_resource(order)})]
