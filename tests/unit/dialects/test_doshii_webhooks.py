"""The Doshii dialect: order_created / order_updated with the Order resource (seed 003),
only to subscribed apps."""

from __future__ import annotations

from webhook_cases import ORDER_ID, event, order

from ordercast.dialects import Target, doshii

SUB = Target("app", "pos", subscribed=True)


def test_only_subscribed_apps_receive() -> None:
    ev = event("order.accepted", "accepted")
    assert doshii.render(ev, order(), Target("app", "pos", subscribed=False)) == []
    assert [m.type for m in doshii.render(ev, order(), SUB)] == ["order_updated"]
    created = event("order.created", "submitted", seq=1)
    assert [m.type for m in doshii.render(created, order("submitted"), SUB)] == ["order_created"]
    assert doshii.render(event("order.stale_update", "ready"), order("ready"), SUB) == []


def test_resource_in_doshii_shape() -> None:
    [msg] = doshii.render(event("order.accepted", "accepted"), order("accepted"), SUB)
    assert msg.payload["type"] == "order_updated"
    doc = msg.payload["data"]
    for key in (
        "id", "locationId", "status", "type", "items", "unapprovedItems", "surcounts",
        "consumer", "externalOrderRef", "posRef", "createdAt", "updatedAt", "version", "uri",
        "log", "requiredAt", "availableEta", "phase", "notes", "transactions",
    ):  # fmt: skip
        assert key in doc, key
    assert doc["id"] == ORDER_ID and doc["status"] == "accepted"
    assert doc["version"] == doshii.version_token(ORDER_ID, 2) != doshii.version_token(ORDER_ID, 3)
    item = doc["items"][0]
    assert item["posId"] == "burger" and item["unitPrice"] == 899
    assert item["totalBeforeSurcounts"] == 2098 and item["type"] == "single"


def test_status_vocabulary() -> None:
    cases = {
        "submitted": "pending",
        "accepted": "accepted",
        "preparing": "accepted",
        "ready": "accepted",
        "completed": "complete",
        "rejected": "rejected",
        "cancelled": "cancelled",
    }
    for ours, theirs in cases.items():
        assert doshii.doshii_status(order(ours)) == theirs
    venue = order("cancelled", cancellation={"by": "venue", "reason": "closed"})
    assert doshii.doshii_status(venue) == "venue_cancelled"
    assert set(doshii.STATUS.values()) <= {
        "pending", "accepted", "rejected", "cancelled", "complete", "venue_cancelled",
    }  # fmt: skip
