"""The Open Dining dialect: canonical events → Pusher events (pure)."""

from __future__ import annotations

import re
from typing import Any

from ordercast.dialects import opendining as od

LOC = od.LocationView("loc1", "America/New_York", {})


def rec(type_: str, seq: int = 5, **data: Any) -> dict[str, Any]:
    return {
        "event_id": f"evt_{seq}", "order_id": "o1", "seq": seq, "type": type_,
        "status": "accepted", "occurred_at": "2025-01-02T03:04:05+00:00",
        "recorded_at": "2025-01-02T03:04:05+00:00", "actor": {}, "data": data,
    }  # fmt: skip


ORDER = {"id": "o1", "type": "delivery", "location_id": "loc1"}


def one(
    type_: str, loc: od.LocationView = LOC, **data: Any
) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e.channel, e.event, e.data) for e in od.render(rec(type_, **data), ORDER, loc)]


def test_confirmations_and_rejection() -> None:
    assert one("order.accepted") == [
        ("private-o-o1", "order_confirmation", {"confirmation": 1, "order_id": "o1", "seq": 5})
    ]
    assert one("order.accepted", confirmation=2) == []
    assert one("order.rejected", reason="closed")[0][2]["confirmation"] == 3


def test_adjustment_asap_and_advance_in_location_time() -> None:
    asap = one(
        "order.adjusted", adjustment={"time": 45}, removed_items=["i1"], removed_options=["Bacon"]
    )
    assert [e for _, e, _ in asap] == ["order_confirmation", "order_adjustment"]
    assert asap[1][2] == {
        "time": 45,
        "items": ["i1"],
        "options": ["Bacon"],
        "order_id": "o1",
        "seq": 5,
    }
    adv = one(
        "order.adjusted",
        adjustment={"order_date": "01/02/2025", "eta": "09:45 PM"},
        required_at="2025-01-03T02:45:00+00:00",
    )[1][2]
    assert adv["order_date"] == "01/02/2025" and adv["eta"] == "9:45 PM"


def test_tracker_labels_default_custom_and_provider_strings() -> None:
    assert one("order.handed_off")[0][2]["status"] == "Out for Delivery"
    custom = od.LocationView("loc1", "UTC", {"tracker_labels": {"preparing": "Cooking"}})
    assert one("order.preparing", custom)[0][2]["status"] == "Cooking"
    assert one("order.submitted") == []
    assert (
        one("delivery.updated", provider_status="courier_ht_pickup")[0][2]["status"]
        == "courier_ht_pickup"
    )
    legacy = od.LocationView("loc1", "UTC", {"legacy_tracker": True})
    assert (
        one("delivery.updated", legacy, provider_status="courier_ht_pickup")[0][2]["status"]
        == "enroute_to_pickup"
    )
    assert one("delivery.delivered", legacy)[0][2]["status"] == "Delivered"
    assert one("delivery.delivered")[0][2]["status"] == "courier_dropped_off"
    assert one("order.preparing")[0][2]["time"] == "2025-01-01T22:04:05-05:00"


def test_notification_update_cancellation_and_restaurant_channel() -> None:
    n = one("order.notification", notification_id="n1", type="order_time_changed", message="m")
    assert n[0][1:] == (
        "order_notification",
        {
            "notification_id": "n1",
            "type": "order_time_changed",
            "message": "m",
            "order_id": "o1",
            "seq": 5,
        },
    )
    key = one("order.priced", total=100)[0][2]["order_state_key"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", key)
    assert key == one("order.priced", total=100)[0][2]["order_state_key"]  # deterministic
    c = one("order.cancelled", reason="r", by="venue")
    assert [(ch, e) for ch, e, _ in c] == [
        ("private-o-o1", "order_cancellation"),
        ("presence-r-loc1", "order_cancellation"),
    ]
    assert one("order.created")[0][:2] == ("presence-r-loc1", "new_order")
    assert one("order.note", text="Dave is making your sandwich")[0][2]["status"].startswith("Dave")
