"""The ordercast dialect: Standard Webhooks envelope around every canonical event."""

from __future__ import annotations

from webhook_cases import ORDER_ID, event, order

from ordercast.dialects import Target, matches, validate_event_types
from ordercast.dialects import ordercast as oc
from ordercast.domain.events import ALL_EVENT_TYPES


def test_envelope() -> None:
    ev = event("order.accepted", "accepted", seq=2, **{"from": "submitted"})
    [msg] = oc.render(ev, order(), Target("app", "channel"))
    assert msg.type == "order.accepted"
    body = msg.payload
    assert set(body) == {"type", "timestamp", "data"}
    assert body["timestamp"] == ev.occurred_at
    data = body["data"]
    assert (data["event_id"], data["order_id"], data["seq"], data["status"]) == (
        "evt_2",
        ORDER_ID,
        2,
        "accepted",
    )
    assert data["event"] == {"from": "submitted"} and data["order"]["id"] == ORDER_ID


def test_every_canonical_type_is_sent() -> None:
    for t in sorted(ALL_EVENT_TYPES):
        assert (
            len(oc.render(event(t, "accepted", delivery_id="d"), order(), Target("a", "kds"))) == 1
        )


def test_filters() -> None:
    assert validate_event_types("ordercast", None) is None
    assert validate_event_types("ordercast", ["order.*", "order.*"]) == ["order.*"]
    assert matches(["order.*"], "order.accepted", "order.accepted")
    assert not matches(["delivery.*"], "order.accepted", "order.accepted")
    assert matches(["order-in-kitchen"], "order.accepted", "order-in-kitchen")
    assert matches(None, "x", "y")
