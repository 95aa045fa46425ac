"""The rbi dialect's POS requests: PRICE_ORDER, COMMIT_ORDER, FIRE_ORDER."""

from __future__ import annotations

from typing import Any

import pytest

from ordercast.dialects import Target
from ordercast.dialects import rbi_pos as rp
from ordercast.domain.events import EventRecord

T0 = "2026-11-23T10:00:00.000000Z"
POS = Target("app_pos", "pos")
CHANNEL = Target("app_ch", "channel")


def event(type_: str, **data: Any) -> EventRecord:
    return EventRecord("evt_1", "ord_1", 1, type_, "draft", T0, T0, {}, data)


def resource(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "ord_1",
        "location_id": "loc_1",
        "type": "delivery",
        "status": "draft",
        "pos_flow": True,
        "total": 2098,
        "fire_order_in_seconds": None,
        "external_order_ref": "ext-9",
        "items": [
            {
                "uuid": "u1",
                "pos_id": "burger",
                "name": "Cheeseburger",
                "quantity": 2,
                "unit_price": 899,
                "total_after_surcounts": 2098,
                "options": [{"name": "Extras", "variants": [{"name": "Bacon", "pos_id": "b"}]}],
            }
        ],
        "consumer": {"name": "Ada", "phone_number": "+15550100"},
        "created_at": T0,
        "uri": "https://hub.example/base/v1/orders/ord_1",
    }
    doc.update(kw)
    return doc


def test_price_order_on_draft_creation() -> None:
    [msg] = rp.render(event("order.created", status="draft"), resource(), POS)
    assert msg.type == "PRICE_ORDER"
    assert msg.payload == {
        "eventType": "PRICE_ORDER",
        "orderId": "ord_1",
        "storeId": "loc_1",
        "callbackUrl": "https://hub.example/base/v1/pos/orders/ord_1/price",
        "eventTime": T0,
        "order": {
            "id": "ord_1",
            "storeId": "loc_1",
            "serviceMode": "DELIVERY",
            "externalReferenceId": "ext-9",
            "cart": [
                {
                    "lineId": "u1",
                    "posId": "burger",
                    "name": "Cheeseburger",
                    "quantity": 2,
                    "unitPrice": 899,
                    "total": 2098,
                    "options": [{"name": "Extras", "variants": [{"name": "Bacon", "posId": "b"}]}],
                }
            ],
            "total": 2098,
            "customer": {"name": "Ada", "phoneNumber": "+15550100"},
            "requiredAt": None,
            "notes": None,
            "createdAt": T0,
        },
    }


@pytest.mark.parametrize("fois", [0, 90, None])
def test_commit_order_carries_fire_order_in_seconds(fois: int | None) -> None:
    [msg] = rp.render(
        event("order.submitted", **{"from": "priced"}), resource(fire_order_in_seconds=fois), POS
    )
    assert msg.type == "COMMIT_ORDER"
    assert msg.payload["fireOrderInSeconds"] == fois
    assert "fireOrderInSeconds" in msg.payload  # null is sent, not omitted
    assert msg.payload["callbackUrl"].endswith("/v1/pos/orders/ord_1/commit")


def test_commit_order_when_created_submitted() -> None:
    [msg] = rp.render(event("order.created", status="submitted"), resource(), POS)
    assert msg.type == "COMMIT_ORDER"


def test_fire_order() -> None:
    [msg] = rp.render(event("order.fire_requested", by="channel"), resource(), POS)
    assert msg.type == "FIRE_ORDER"
    assert msg.payload["firedBy"] == "channel"
    assert msg.payload["callbackUrl"] == "https://hub.example/base/v1/pos/orders/ord_1/fire"


def test_nothing_for_other_apps_other_events_or_orders_outside_the_flow() -> None:
    created = event("order.created", status="draft")
    assert rp.render(created, resource(), CHANNEL) == []
    assert rp.render(created, resource(pos_flow=False), POS) == []
    assert rp.render(event("order.created", status="accepted"), resource(), POS) == []
    for t in ("order.priced", "order.accepted", "order.held", "order.preparing", "order.failed"):
        assert rp.render(event(t), resource(), POS) == []


def test_base_url_from_uri() -> None:
    assert rp.base_url({"id": "o", "uri": "http://127.0.0.1:8080/v1/orders/o"}) == (
        "http://127.0.0.1:8080"
    )
    assert rp.callback_url({"id": "o", "uri": "http://h/v1/orders/o"}, "FIRE_ORDER") == (
        "http://h/v1/pos/orders/o/fire"
    )
