"""The RBI dialect against seed 001's lifecycle statuses."""

from __future__ import annotations

from webhook_cases import LOCATION_ID, ORDER_ID, event, order

from ordercast.dialects import Target, rbi

SEED_001_STATUSES = (
    "CREATED",
    "PRICED",
    "COMMITTED",
    "PREPARING",
    "PREPARED",
    "DONE",
    "CANCELED",
    "ERROR",
)
T = Target("app", "pos")


def status_of(ev_type: str, status: str, **data: object) -> list[str]:
    return [
        m.payload["status"] for m in rbi.render(event(ev_type, status, **data), order(status), T)
    ]


def test_every_seed_status_is_emitted_and_nothing_else() -> None:
    assert rbi.STATUSES == SEED_001_STATUSES
    assert set(rbi.STATUS_OF_EVENT.values()) == set(SEED_001_STATUSES)


def test_lifecycle_mapping() -> None:
    assert status_of("order.created", "draft") == ["CREATED"]
    assert status_of("order.priced", "priced") == ["PRICED"]
    assert status_of("order.submitted", "submitted") == []  # the commit webhook, not a status
    assert status_of("order.accepted", "accepted") == ["COMMITTED"]
    assert status_of("order.held", "held", **{"from": "accepted"}) == []
    assert status_of("order.held", "held", **{"from": "submitted"}) == ["COMMITTED"]
    assert status_of("order.preparing", "preparing") == ["PREPARING"]
    assert status_of("order.ready", "ready") == ["PREPARED"]
    assert status_of("order.handed_off", "handed_off") == []
    assert status_of("order.completed", "completed") == ["DONE"]
    assert status_of("order.cancelled", "cancelled") == ["CANCELED"]
    assert status_of("order.rejected", "rejected") == ["ERROR"]
    assert status_of("order.failed", "failed") == ["ERROR"]
    assert status_of("order.note", "accepted", text="x") == []
    assert status_of("delivery.picked_up", "handed_off", delivery_id="d") == []


def test_order_event_body() -> None:
    [msg] = rbi.render(event("order.ready", "ready"), order("ready"), T)
    assert msg.type == "ORDER_EVENT"
    assert msg.payload == {
        "eventType": "ORDER_EVENT",
        "orderId": ORDER_ID,
        "storeId": LOCATION_ID,
        "status": "PREPARED",
        "eventTime": "2026-01-02T03:04:05.000000Z",
    }
    [err] = rbi.render(
        event("order.failed", "failed", errors=[{"code": "menu", "message": "no fries"}]),
        order("failed"),
        T,
    )
    assert err.payload["errors"] == [{"code": "MENU", "message": "no fries"}]
