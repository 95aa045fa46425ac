"""The POS requests of the ``rbi`` dialect: PRICE_ORDER, COMMIT_ORDER and FIRE_ORDER.

RBI's partner POS API (seed 001) calls the POS with three webhooks and the POS answers
each on a callback endpoint. ordercast sends them to POS apps (``app_kind == "pos"``) for
orders in the POS flow (``order["pos_flow"]``, see ``domain/pos_flow.py``)::

    {"eventType": "PRICE_ORDER" | "COMMIT_ORDER" | "FIRE_ORDER",
     "orderId", "storeId", "callbackUrl", "eventTime", "order": {…}}

COMMIT_ORDER adds ``fireOrderInSeconds`` (0 now, N seconds, or null = hold until fired).
The callback URL is ``{base}/v1/pos/orders/{id}/{price|commit|fire}``, where ``{base}``
comes from the Order resource's ``uri`` (``{base}/v1/orders/{id}``), so this stays pure.

Triggers (canonical event → request): ``order.created`` at ``draft`` → PRICE_ORDER;
``order.submitted`` (or ``order.created`` at ``submitted``, pricing skipped) →
COMMIT_ORDER; ``order.fire_requested`` → FIRE_ORDER. RBI's full request schemas were not
in the source excerpts; the ``order`` object uses the channel OpenAPI's names where known
(``serviceMode``) and camelCase of ordercast's fields elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ordercast.dialects import Target, WireMessage
from ordercast.dialects._casing import camelize
from ordercast.domain.events import EventRecord

PRICE_ORDER: Final = "PRICE_ORDER"
COMMIT_ORDER: Final = "COMMIT_ORDER"
FIRE_ORDER: Final = "FIRE_ORDER"
REQUEST_TYPES: Final[frozenset[str]] = frozenset({PRICE_ORDER, COMMIT_ORDER, FIRE_ORDER})

# request → the callback path segment that answers it
CALLBACK_OF: Final[dict[str, str]] = {
    PRICE_ORDER: "price",
    COMMIT_ORDER: "commit",
    FIRE_ORDER: "fire",
}

# ordercast order type → RBI ServiceMode (channel OpenAPI enum)
SERVICE_MODE: Final[dict[str, str]] = {
    "pickup": "TAKEOUT",
    "delivery": "DELIVERY",
    "dine_in": "EAT_IN",
}

# canonical event → request; ``order.created`` is looked up by its first status.
REQUEST_OF_EVENT: Final[dict[str, str]] = {
    "order.submitted": COMMIT_ORDER,
    "order.fire_requested": FIRE_ORDER,
}
REQUEST_OF_CREATED_STATUS: Final[dict[str, str]] = {
    "draft": PRICE_ORDER,
    "submitted": COMMIT_ORDER,
}


def base_url(order: Mapping[str, Any]) -> str:
    """``{base}`` of the Order resource's ``uri`` (``{base}/v1/orders/{id}``)."""
    uri = str(order.get("uri") or "")
    suffix = f"/v1/orders/{order.get('id')}"
    return uri[: -len(suffix)] if uri.endswith(suffix) else uri.rsplit("/v1/", 1)[0]


def callback_url(order: Mapping[str, Any], request: str) -> str:
    return f"{base_url(order)}/v1/pos/orders/{order.get('id')}/{CALLBACK_OF[request]}"


def _line(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "lineId": item.get("uuid"),
        "posId": item.get("pos_id"),
        "name": item.get("name"),
        "quantity": item.get("quantity", 1),
        "unitPrice": item.get("unit_price", 0),
        "total": item.get("total_after_surcounts"),
        "options": camelize(list(item.get("options") or [])),
    }


def rbi_order(order: Mapping[str, Any]) -> dict[str, Any]:
    """The ``order`` object of a POS request."""
    return {
        "id": order.get("id"),
        "storeId": order.get("location_id"),
        "serviceMode": SERVICE_MODE.get(str(order.get("type")), "TAKEOUT"),
        "externalReferenceId": order.get("external_order_ref"),
        "cart": [_line(i) for i in order.get("items") or [] if isinstance(i, Mapping)],
        "total": order.get("total"),
        "customer": camelize(dict(order.get("consumer") or {})),
        "requiredAt": order.get("required_at"),
        "notes": order.get("notes"),
        "createdAt": order.get("created_at"),
    }


def request_for(event: EventRecord) -> str | None:
    if event.type == "order.created":
        return REQUEST_OF_CREATED_STATUS.get(str(event.data.get("status")))
    return REQUEST_OF_EVENT.get(event.type)


def render(event: EventRecord, order: Mapping[str, Any], target: Target) -> list[WireMessage]:
    """The POS request ``event`` triggers for ``target`` (none for non-POS apps)."""
    if target.app_kind != "pos" or not order.get("pos_flow"):
        return []
    request = request_for(event)
    if request is None:
        return []
    payload: dict[str, Any] = {
        "eventType": request,
        "orderId": event.order_id,
        "storeId": order.get("location_id"),
        "callbackUrl": callback_url(order, request),
        "eventTime": event.occurred_at,
    }
    if request == COMMIT_ORDER:
        payload["fireOrderInSeconds"] = order.get("fire_order_in_seconds")
    if request == FIRE_ORDER:
        payload["firedBy"] = event.data.get("by")
    payload["order"] = rbi_order(order)
    return [WireMessage(request, payload)]
