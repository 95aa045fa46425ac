"""decide() over every (order state, command) pair, and the command-specific rules."""

from __future__ import annotations

from typing import Any

import pytest

from ordercast.domain import decide as d
from ordercast.domain.events import NewEvent
from ordercast.domain.lifecycle import Move, OrderStatus
from ordercast.domain.order import Order, evolve, with_totals
from ordercast.domain.provider_codes import PROVIDER_CODES
from ordercast.errors import InvalidTransition, NotFound, ValidationError

T0 = "2026-11-23T10:00:00.000000Z"


def make_order(status: str = "submitted", **kw: Any) -> Order:
    items = with_totals(
        [
            {"uuid": "i1", "name": "Burger", "quantity": 1, "unit_price": 900,
             "options": [{"name": "Cheese", "variants": [{"name": "Cheddar", "price": 100}]}]},
            {"uuid": "i2", "name": "Fries", "quantity": 2, "unit_price": 300, "options": []},
        ]
    )  # fmt: skip
    return Order(
        id="o1",
        tenant_id="t1",
        location_id="l1",
        status=status,
        version=1,
        type="delivery",
        created_at=T0,
        updated_at=T0,
        items=items,
        total=1600,
        **kw,
    )


def apply_all(order: Order, events: list[NewEvent]) -> Order:
    for e in events:
        order = evolve(order, e, T0)
    return order


OPEN = ["draft", "priced", "submitted", "accepted", "held", "preparing", "ready", "handed_off"]
CLOSED = ["completed", "rejected", "cancelled", "failed"]
ALL = OPEN + CLOSED

# command name -> (command, expected outcome per state: "A" applied / "S" stale /
# "D" duplicate / "I" invalid), in the order of ALL.
COMMANDS: dict[str, tuple[d.Command, str]] = {
    "confirm 1": (d.Confirm(confirmation=1), "AAADSSSS" + "IIII"),
    "confirm 2": (d.Confirm(confirmation=2, adjustment={"time": 30}), "AAAAAAAA" + "IIII"),
    "confirm 3": (d.Confirm(confirmation=3, reason="closed"), "AAAAAAAA" + "IDII"),
    "cancel": (d.Cancel(reason="r", by="venue"), "AAAAAAAA" + "IIDI"),
    "cancel request": (d.Cancel(reason="r", by="customer", request_only=True), "A" * 8 + "IIII"),
    "notify": (d.Notify("n1", "order_time_changed", "later"), "A" * 12),
    "note": (d.AddNote("Dave is making your sandwich"), "A" * 12),
    "start delivery": (d.StartDelivery("d1", "acme"), "A" * 8 + "IIII"),
    "reopen": (d.Transition(to="reopened"), "I" * 8 + "AAAA"),
    "error": (d.RecordError([{"code": "MENU", "message": "no fries"}]), "A" * 12),
}

CASES = [
    (name, state, expected[i]) for name, (_, expected) in COMMANDS.items() for i, state in enumerate(ALL)
]  # fmt: skip


@pytest.mark.parametrize(("name", "state", "expected"), CASES)
def test_every_state_and_command(name: str, state: str, expected: str) -> None:
    cmd = COMMANDS[name][0]
    order = make_order(state, previous_status="preparing" if state in CLOSED else None)
    if expected == "I":
        with pytest.raises(InvalidTransition):
            d.decide(order, cmd)
        return
    decision = d.decide(order, cmd)
    want = {"A": Move.APPLY, "S": Move.STALE, "D": Move.DUPLICATE}[expected]
    assert decision.outcome is want
    assert decision.applied is (expected == "A")
    assert (decision.events == []) is (expected == "D")
    after = apply_all(order, decision.events)
    assert after.version == order.version + len(decision.events)
    if expected == "S":
        assert after.status == order.status


def test_confirmation_2_adjusts_items_options_and_eta() -> None:
    order = make_order("submitted")
    decision = d.decide(
        order,
        d.Confirm(
            confirmation=2,
            adjustment={"time": 45, "items": ["i2"], "options": ["Cheese"]},
            available_eta="2026-11-23T10:45:00.000000Z",
        ),
    )
    assert [e.type for e in decision.events] == ["order.accepted", "order.adjusted"]
    after = apply_all(order, decision.events)
    assert after.status == "accepted"
    assert [i["uuid"] for i in after.items] == ["i1"]
    assert after.items[0]["options"] == []
    assert after.total == 900
    assert after.available_eta == "2026-11-23T10:45:00.000000Z"
    assert after.confirmation == 2


def test_confirmation_validation() -> None:
    order = make_order()
    with pytest.raises(ValidationError, match="reason"):
        d.decide(order, d.Confirm(confirmation=3))
    with pytest.raises(ValidationError, match="adjustment"):
        d.decide(order, d.Confirm(confirmation=2))
    with pytest.raises(ValidationError, match="1 \\(confirmed\\)"):
        d.decide(order, d.Confirm(confirmation=4))
    with pytest.raises(ValidationError, match="i9"):
        d.decide(order, d.Confirm(confirmation=2, adjustment={"items": ["i9"]}))


def test_rejection_keeps_reason_and_reopen_restores_open_state() -> None:
    order = make_order("preparing")
    after = apply_all(order, d.decide(order, d.Confirm(confirmation=3, reason="no oil")).events)
    assert (after.status, after.rejection_reason, after.previous_status) == (
        "rejected",
        "no oil",
        "preparing",
    )
    reopened = apply_all(after, d.decide(after, d.Transition(to="reopened")).events)
    assert reopened.status == "preparing"


def test_stale_update_is_recorded_not_applied() -> None:
    order = make_order("ready")
    decision = d.decide(order, d.Transition(to="accepted"))
    assert not decision.applied
    assert [e.type for e in decision.events] == ["order.stale_update"]
    assert decision.events[0].data == {"requested": "accepted", "current": "ready"}


def test_completed_how_is_validated() -> None:
    with pytest.raises(ValidationError, match="how"):
        d.decide(make_order("ready"), d.Transition(to="completed", how="teleported"))
    with pytest.raises(ValidationError, match="how"):
        d.decide(make_order("ready"), d.Transition(to="preparing", how="delivered"))
    decision = d.decide(make_order("ready"), d.Transition(to="completed", how="picked_up"))
    assert decision.events[0].data["how"] == "picked_up"


def test_unknown_status_names_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match="handed_off"):
        d.decide(make_order(), d.Transition(to="flying"))


def _with_delivery(order_status: str, courier_status: str) -> Order:
    order = make_order("ready")
    order = apply_all(order, d.decide(order, d.StartDelivery("d1", "acme")).events)
    order.status = order_status
    if courier_status != "requested":
        order.deliveries["d1"].status = courier_status
    return order


def test_courier_picked_up_couples_to_handed_off_and_delivered_to_completed() -> None:
    order = _with_delivery("ready", "assigned")
    decision = d.decide(order, d.CourierUpdate("d1", status="picked_up"))
    assert [e.type for e in decision.events] == ["delivery.picked_up", "order.handed_off"]
    order = apply_all(order, decision.events)
    assert order.status == "handed_off"
    decision = d.decide(order, d.CourierUpdate("d1", status="delivered"))
    assert [e.type for e in decision.events] == ["delivery.delivered", "order.completed"]
    order = apply_all(order, decision.events)
    assert (order.status, order.completed_how) == ("completed", "delivered")


def test_coupling_never_moves_a_closed_order() -> None:
    order = _with_delivery("cancelled", "at_dropoff")
    decision = d.decide(order, d.CourierUpdate("d1", status="delivered"))
    assert [e.type for e in decision.events] == ["delivery.delivered"]


@pytest.mark.parametrize("row", PROVIDER_CODES, ids=lambda r: r.event)
@pytest.mark.parametrize("flavour", ["standard", "legacy"])
def test_every_open_dining_provider_string_is_accepted(row: Any, flavour: str) -> None:
    value = getattr(row, flavour)
    returning = row.courier_status is not None and row.courier_status.value.startswith("return")
    order = _with_delivery("ready", "picked_up" if returning else "requested")
    decision = d.decide(order, d.CourierUpdate("d1", status=value))
    assert decision.events
    first = decision.events[0]
    assert first.data["provider_status"] == value
    if row.courier_status is None or row.courier_status.value == "requested":
        # No state to move (or the job is already requested): the provider string is
        # still recorded, so trackers can show it.
        assert first.type == "delivery.updated"
    else:
        assert first.type == f"delivery.{row.courier_status.value}"


def test_legacy_and_standard_strings_map_to_the_same_state() -> None:
    order = _with_delivery("ready", "assigned")
    a = d.decide(order, d.CourierUpdate("d1", status="courier_confirmed_store_arrival"))
    b = d.decide(order, d.CourierUpdate("d1", status="courier_pickup_arrival"))
    assert a.events[0].type == b.events[0].type == "delivery.at_pickup"


def test_courier_facts_proof_refund_location() -> None:
    order = _with_delivery("completed", "delivered")
    decision = d.decide(
        order,
        d.CourierUpdate(
            "d1",
            proof={"photo_url": "https://x/p.jpg"},
            refund={"amount": 300},
            location={"lat": 1},
        ),
    )
    assert [e.type for e in decision.events] == [
        "delivery.location_updated",
        "delivery.proof_added",
        "delivery.refund_requested",
    ]
    after = apply_all(order, decision.events)
    assert after.deliveries["d1"].proof == {"photo_url": "https://x/p.jpg"}


def test_courier_update_errors() -> None:
    order = _with_delivery("ready", "requested")
    with pytest.raises(NotFound):
        d.decide(order, d.CourierUpdate("nope", status="assigned"))
    with pytest.raises(ValidationError, match="courier_picked_up"):
        d.decide(order, d.CourierUpdate("d1", status="beamed"))
    with pytest.raises(ValidationError):
        d.decide(order, d.CourierUpdate("d1"))
    with pytest.raises(InvalidTransition):
        d.decide(order, d.CourierUpdate("d1", status="returning"))


def test_order_status_enum_and_ranks_agree_with_design() -> None:
    assert [s.value for s in OrderStatus][:9] == [*OPEN, "completed"]
