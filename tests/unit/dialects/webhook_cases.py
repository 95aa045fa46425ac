"""Builders for dialect unit tests: stored events and Order resources, no I/O."""

from __future__ import annotations

from typing import Any

from ordercast.domain.events import EventRecord

ORDER_ID = "ord_1"
LOCATION_ID = "loc_1"


def event(type_: str, status: str, seq: int = 2, **data: Any) -> EventRecord:
    return EventRecord(
        event_id=f"evt_{seq}",
        order_id=ORDER_ID,
        seq=seq,
        type=type_,
        status=status,
        occurred_at="2026-01-02T03:04:05.000000Z",
        recorded_at="2026-01-02T03:04:06.000000Z",
        actor={"type": "app", "id": "app_1", "kind": "pos"},
        data=data,
    )


def order(status: str = "accepted", type_: str = "delivery", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": ORDER_ID,
        "tenant_id": "ten_1",
        "location_id": LOCATION_ID,
        "status": status,
        "version": 2,
        "type": type_,
        "created_at": "2026-01-02T03:00:00.000000Z",
        "updated_at": "2026-01-02T03:04:06.000000Z",
        "items": [
            {
                "uuid": "u1",
                "pos_id": "burger",
                "name": "Burger",
                "quantity": 2,
                "unit_price": 899,
                "options": [{"name": "Extras", "variants": [{"name": "Bacon", "price": 150}]}],
                "total_before_surcounts": 2098,
                "total_after_surcounts": 2098,
            }
        ],
        "unapproved_items": [],
        "surcounts": [],
        "consumer": {"name": "Ada", "phone": "+15550100"},
        "external_order_ref": "EXT1",
        "pos_ref": None,
        "errors": [],
        "cancellation": None,
        "uri": "http://x/v1/orders/ord_1",
        "log": "http://x/v1/orders/ord_1/events",
    }
    doc.update(extra)
    return doc
