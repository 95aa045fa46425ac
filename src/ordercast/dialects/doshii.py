"""The Doshii dialect (seed 003): webhooks, and the Partner API's shapes as data.

Webhooks (``order_created`` / ``order_updated``) go only to apps subscribed to the order
(``POST …/orders/{id}/subscription``, or implicitly by creating or updating it). Body:
``{"type": "order_created" | "order_updated", "data": <the Order resource in Doshii's
shape>}`` — camelCase fields, Doshii's status vocabulary (:data:`STATUS`), ``version`` as
seed 003's obfuscated string (:func:`version_token`), ``uri`` and ``log`` links under
``/partner/v3``. Stale updates (recorded, nothing changed) send nothing.

The Partner API (``api/doshii.py``) and the Doshii socket (``gateway/doshii.py``) use the
same tables: :data:`STATUS` (canonical → Doshii) and :data:`INBOUND` (Doshii → the
canonical move it asks for), :data:`DELIVERY_INBOUND` / :data:`DELIVERY_STATUS` for the
courier, :func:`create_spec` for the SDK's create body and :func:`order_resource` for
every Order the partner reads.
"""

from __future__ import annotations

import base64
import hashlib
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
from ordercast.errors import ValidationError

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

# Doshii order status (what a partner PUTs) → (canonical target, who cancelled). Doshii's
# "pending" is where a new order starts (ordercast "submitted"): asking for it later is a
# stale update, recorded and not applied, as for any lower-rank target.
INBOUND: Final[dict[str, tuple[str, str | None]]] = {
    "pending": ("submitted", None),
    "accepted": ("accepted", None),
    "rejected": ("rejected", None),
    "complete": ("completed", None),
    "cancelled": ("cancelled", "platform"),
    "venue_cancelled": ("cancelled", "venue"),
}

# The canonical states each Doshii status filter (GET /orders?status=…) selects.
STATUS_FILTER: Final[dict[str, frozenset[str]]] = {
    doshii: frozenset(ours for ours, theirs in STATUS.items() if theirs == doshii)
    for doshii in ("pending", "accepted", "rejected", "complete", "cancelled")
} | {"venue_cancelled": frozenset({"cancelled"})}

# Order types: Doshii → canonical (and back).
ORDER_TYPE: Final[dict[str, str]] = {
    "pickup": "pickup",
    "delivery": "delivery",
    "dinein": "dine_in",
}
ORDER_TYPE_OUT: Final[dict[str, str]] = {v: k for k, v in ORDER_TYPE.items()}

# Doshii delivery status (PUT /orders/{id}/delivery) → canonical courier status, and the
# canonical courier states Doshii's three-value vocabulary shows (None: not yet under way).
DELIVERY_INBOUND: Final[dict[str, str]] = {
    "delivering": "picked_up",
    "delivered": "delivered",
    "failed": "failed",
}
DELIVERY_STATUS: Final[dict[str, str | None]] = {
    "requested": None,
    "unassigned": None,
    "assigned": None,
    "at_pickup": None,
    "picked_up": "delivering",
    "at_dropoff": "delivering",
    "returning": "failed",
    "delivered": "delivered",
    "returned": "failed",
    "cancelled": "failed",
    "failed": "failed",
}

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


def version_token(order_id: str, version: int) -> str:
    """Seed 003's "obfuscated string representation of the version": 11 URL-safe
    characters derived from the order id and its version (``seq`` of its last event).
    A partner echoes it back on ``PUT``; any other value is a stale version (409)."""
    digest = hashlib.blake2b(f"{order_id}:{version}".encode(), digest_size=8).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


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


def _partner_uri(uri: Any) -> Any:
    """``…/v1/orders/{id}`` (ordercast's own link) as the Partner API's ``…/partner/v3/…``."""
    if isinstance(uri, str) and "/v1/orders/" in uri:
        return uri.replace("/v1/orders/", "/partner/v3/orders/", 1)
    return uri


def _delivery(order: Mapping[str, Any]) -> dict[str, Any] | None:
    deliveries = order.get("deliveries") or []
    if isinstance(deliveries, Mapping):
        deliveries = sorted(deliveries.values(), key=lambda d: str(d.get("created_at")))
    if not deliveries:
        return None
    last = deliveries[-1]
    details = dict(last.get("details") or {})
    return {
        "status": DELIVERY_STATUS.get(str(last.get("status"))),
        "displayId": details.get("display_id"),
        "phase": details.get("phase") or last.get("provider_status"),
        "failedReason": details.get("failed_reason"),
        "deliveryEta": last.get("eta"),
        "driverName": details.get("driver_name"),
        "driverPhone": details.get("driver_phone"),
        "trackingUrl": details.get("tracking_url"),
    }


def order_resource(order: Mapping[str, Any]) -> dict[str, Any]:
    """Our Order resource (``GET /v1/orders/{id}``'s snake_case dict) in Doshii's field
    names and status vocabulary: seed 003's fields plus the SDK's ``OrderResponse``."""
    consumer = camelize(order.get("consumer") or {})
    uri = _partner_uri(order.get("uri"))
    delivery = _delivery(order)
    last_delivery = (order.get("deliveries") or [None])[-1] if order.get("deliveries") else None
    doc: dict[str, Any] = {
        "id": order.get("id"),
        "locationId": order.get("location_id"),
        "status": doshii_status(order),
        "type": ORDER_TYPE_OUT.get(str(order.get("type")), order.get("type")),
        "phase": order.get("phase"),
        "mealPhase": order.get("phase"),
        "notes": order.get("notes"),
        "requiredAt": order.get("required_at"),
        "availableEta": order.get("available_eta"),
        "manuallyProcessed": False,
        "checkinId": None,
        "items": [_item(i) for i in order.get("items", [])],
        "unapprovedItems": [_item(i) for i in order.get("unapproved_items", [])],
        "surcounts": camelize(order.get("surcounts", [])),
        "taxes": None,
        "consumer": consumer,
        "externalOrderRef": order.get("external_order_ref"),
        "posRef": order.get("pos_ref"),
        "posCreatedAt": None,
        "createdAt": order.get("created_at"),
        "updatedAt": order.get("updated_at"),
        "transactions": [],
        "version": version_token(str(order.get("id")), int(order.get("version") or 0)),
        "uri": uri,
        "log": f"{uri}/logs" if isinstance(uri, str) else order.get("log"),
    }
    if delivery is not None:
        doc["delivery"] = delivery
        if isinstance(last_delivery, Mapping):
            doc["deliveryOrderId"] = (last_delivery.get("details") or {}).get(
                "delivery_order_id"
            ) or last_delivery.get("id")
    if order.get("rejection_code"):
        doc["rejectionCode"] = order["rejection_code"]
    if order.get("rejection_reason"):
        doc["rejectionReason"] = order["rejection_reason"]
    return doc


def render(event: EventRecord, order: Mapping[str, Any], target: Target) -> list[WireMessage]:
    if not target.subscribed or event.type in SILENT:
        return []
    name = wire_name(event.type)
    return [WireMessage(name, {"type": name, "data": order_resource(order)})]


def wire_name(event_type: str) -> str:
    """``order_created`` for the creation event, ``order_updated`` for any other change."""
    return ORDER_CREATED_EVENT if event_type == ORDER_CREATED else ORDER_UPDATED_EVENT


# -- the Partner API's request bodies ---------------------------------------------------


def cents(value: Any, field: str) -> int:
    """Doshii money: integer cents, as a number or a string of digits (seed 003)."""
    if isinstance(value, bool):
        raise ValidationError(
            f"{field} must be cents (an integer or a string of digits)", field=field
        )
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ValidationError(f"{field} must be cents (an integer or a string of digits)", field=field)


def _variant(v: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": v.get("name"),
        "price": cents(v.get("price", 0), f"{where}.price"),
    }
    if v.get("posId") is not None:
        out["pos_id"] = str(v["posId"])
    return out


def _option(o: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": o.get("name"),
        "variants": [
            _variant(v, f"{where}.variants.{i}") for i, v in enumerate(_list(o, "variants", where))
        ],
    }
    if o.get("posId") is not None:
        out["pos_id"] = str(o["posId"])
    for key in ("min", "max"):
        if o.get(key) not in (None, ""):
            out[key] = cents(o[key], f"{where}.{key}")
    return out


def _surcount(s: Mapping[str, Any], where: str) -> dict[str, Any]:
    amount = s.get("amount", s.get("value", 0))
    if isinstance(amount, str):
        try:
            amount = float(amount)
        except ValueError as exc:
            raise ValidationError(
                f"{where}.amount must be a number", field=f"{where}.amount"
            ) from exc
    out: dict[str, Any] = {
        "name": s.get("name"),
        "type": s.get("type", "absolute"),
        "amount": amount,
        "value": cents(s.get("value", 0), f"{where}.value"),
    }
    for ours, theirs in (
        ("pos_id", "posId"),
        ("reward_id", "rewardId"),
        ("description", "description"),
    ):
        if s.get(theirs) is not None:
            out[ours] = str(s[theirs])
    if s.get("rewardRef") is not None and "reward_id" not in out:
        out["reward_id"] = str(s["rewardRef"])
    return out


def _list(doc: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(x, Mapping) for x in value):
        raise ValidationError(f"{where}.{key} must be a list of objects", field=f"{where}.{key}")
    return value


def _product(p: Mapping[str, Any], where: str) -> dict[str, Any]:
    quantity = p.get("quantity", 1)
    out: dict[str, Any] = {
        "name": p.get("name"),
        "quantity": cents(quantity, f"{where}.quantity"),
        "unit_price": cents(p.get("unitPrice", 0), f"{where}.unitPrice"),
        "options": [
            _option(o, f"{where}.options.{i}") for i, o in enumerate(_list(p, "options", where))
        ],
        "surcounts": [
            _surcount(s, f"{where}.surcounts.{i}")
            for i, s in enumerate(_list(p, "surcounts", where))
        ],
    }
    if p.get("posId") is not None:
        out["pos_id"] = str(p["posId"])
    for key in ("description", "type", "uuid"):
        if p.get(key) is not None:
            out[key] = p[key]
    for ours, theirs in (("tags", "tags"), ("menu_dir", "menuDir")):
        if p.get(theirs) is not None:
            out[ours] = p[theirs]
    included = _list(p, "includedItems", where)
    if included:
        out["included_items"] = [
            {
                "name": x.get("name"),
                "quantity": cents(x.get("quantity", 1), f"{where}.includedItems.{i}.quantity"),
                "unit_price": cents(x.get("unitPrice", 0), f"{where}.includedItems.{i}.unitPrice"),
                **({"pos_id": str(x["posId"])} if x.get("posId") is not None else {}),
                "options": [
                    _option(o, f"{where}.includedItems.{i}.options.{j}")
                    for j, o in enumerate(_list(x, "options", f"{where}.includedItems.{i}"))
                ],
            }
            for i, x in enumerate(included)
        ]
    return out


_CONSUMER_FIELDS: Final = ("name", "phone", "email", "notes")
_ADDRESS_FIELDS: Final[dict[str, str]] = {
    "line1": "line1",
    "line2": "line2",
    "city": "city",
    "state": "state",
    "postalCode": "postal_code",
    "country": "country",
    "notes": "notes",
}


def create_spec(body: Mapping[str, Any], location_id: str) -> dict[str, Any]:
    """The SDK's create body (``{order: {...}, consumer: {...}, ...}``) as ordercast's
    create spec (the snake_case body of ``POST /v1/orders``). Fields ordercast does not keep
    (taxes, revenueCentre, checkinId, transactions, members, log, …) are dropped."""
    order = body.get("order")
    if not isinstance(order, Mapping):
        raise ValidationError("the body needs an 'order' object", field="order")
    kind = order.get("type", "pickup")
    if kind not in ORDER_TYPE:
        raise ValidationError(
            f"unknown order type '{kind}'; use one of: {', '.join(ORDER_TYPE)}", field="order.type"
        )
    status = order.get("status", "pending")
    if status not in ("pending", "accepted"):
        raise ValidationError(
            "a new order's status must be 'pending' or 'accepted'", field="order.status"
        )
    spec: dict[str, Any] = {
        "location_id": location_id,
        "type": ORDER_TYPE[kind],
        "status": INBOUND[status][0],
        "items": [
            _product(p, f"order.items.{i}") for i, p in enumerate(_list(order, "items", "order"))
        ],
        "surcounts": [
            _surcount(s, f"order.surcounts.{i}")
            for i, s in enumerate(_list(order, "surcounts", "order"))
        ],
    }
    for ours, theirs in (
        ("external_order_ref", "externalOrderRef"),
        ("notes", "notes"),
        ("required_at", "requiredAt"),
        ("available_eta", "availableEta"),
    ):
        if order.get(theirs) is not None:
            spec[ours] = order[theirs]
    consumer = body.get("consumer") or {}
    if not isinstance(consumer, Mapping):
        raise ValidationError("consumer must be an object", field="consumer")
    out: dict[str, Any] = {k: consumer[k] for k in _CONSUMER_FIELDS if consumer.get(k) is not None}
    address = consumer.get("address")
    if isinstance(address, Mapping):
        out["address"] = {
            ours: address[theirs]
            for theirs, ours in _ADDRESS_FIELDS.items()
            if address.get(theirs) is not None
        }
    spec["consumer"] = out
    return spec


def status_move(status: Any) -> tuple[str, str | None]:
    """The canonical move a Doshii ``PUT /orders/{id}`` ``status`` asks for."""
    if status not in INBOUND:
        raise ValidationError(
            f"unknown order status '{status}'; use one of: {', '.join(INBOUND)}", field="status"
        )
    return INBOUND[status]


def status_filter(value: str) -> frozenset[str]:
    """``status=accepted,pending`` (the SDK joins its list with commas) → canonical states."""
    out: set[str] = set()
    for part in value.split(","):
        name = part.strip()
        if not name:
            continue
        if name not in STATUS_FILTER:
            raise ValidationError(
                f"unknown order status '{name}'; use any of: {', '.join(STATUS_FILTER)}",
                field="status",
            )
        out |= STATUS_FILTER[name]
    return frozenset(out)


def log_entry(event: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of ``GET /orders/{id}/logs``: an event of the order's log in Doshii's
    words (who did what, when, and the order's status and version after it)."""
    actor = event.get("actor") or {}
    data = event.get("data") or {}
    entry: dict[str, Any] = {
        "id": event.get("event_id"),
        "action": event.get("type"),
        "event": wire_name(str(event.get("type"))),
        "status": STATUS.get(str(event.get("status")), "pending"),
        "version": version_token(str(event.get("order_id")), int(event.get("seq") or 0)),
        "performedBy": {"type": actor.get("type"), "id": actor.get("id")},
        "performedAt": event.get("occurred_at"),
        "createdAt": event.get("recorded_at"),
    }
    log = data.get("log") if isinstance(data, Mapping) else None
    if isinstance(log, Mapping):
        entry.update({k: v for k, v in log.items() if isinstance(k, str)})
    return entry
