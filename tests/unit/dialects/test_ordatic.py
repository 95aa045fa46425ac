"""The Ordatic dialect against seed 002: events, app-kind routing, payload shapes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from webhook_cases import LOCATION_ID, ORDER_ID, event, order

from ordercast.dialects import Target, validate_event_types
from ordercast.dialects import ordatic as o
from ordercast.errors import ValidationError

# Seed 002's tables, transcribed: Channel | Pos | Riders | Loyalty (✔️ = True).
SEED_002 = {
    "order-accepted": (False, True, False, False),
    "order-in-kitchen": (True, False, True, True),
    "order-ready-to-pick-up": (True, False, True, False),
    "order-picked-up": (True, False, False, False),
    "order-served": (True, False, False, False),
    "order-canceled": (False, True, True, True),
    "rider-created": (True, True, False, False),
    "rider-picking": (True, True, False, False),
    "rider-delivering": (True, True, False, False),
    "rider-completed": (True, True, False, False),
    "rider-error": (True, True, False, False),
    "rider-proof-delivery": (True, False, False, False),
    "rider-refund": (True, False, False, False),
}
KINDS = ("channel", "pos", "rider", "loyalty")
SEED_FILE = Path("/work/shared/seeds/002_6472339b22d32ce1.txt")


def test_app_scope_is_the_seed_table() -> None:
    assert o.APP_SCOPE == SEED_002
    assert frozenset(SEED_002) == o.EVENT_TYPES


def test_app_scope_matches_the_seed_document_when_present() -> None:
    if not SEED_FILE.exists():  # the seed lives beside the repository, not inside it
        return
    rows: dict[str, tuple[bool, ...]] = {}
    last: tuple[bool, ...] | None = None
    for line in SEED_FILE.read_text().splitlines():
        if re.match(r"^(✔️|✖️) \|", line):
            last = tuple(cell.strip() == "✔️" for cell in line.split("|") if cell.strip())
        m = re.search(r'"eventType": "([a-z-]+)"', line)
        if m and last is not None:
            rows[m.group(1)] = last
    assert rows == SEED_002


def sent(
    ev_type: str, kind: str, status: str = "accepted", otype: str = "delivery", **data: object
) -> list[str]:
    msgs = o.render(event(ev_type, status, **data), order(status, otype), Target("app", kind))
    return [m.type for m in msgs]


@pytest.mark.parametrize("kind", KINDS)
def test_every_event_reaches_exactly_the_kinds_the_seed_allows(kind: str) -> None:
    column = KINDS.index(kind)
    cases = {
        "order-accepted": ("order.submitted", "submitted", "delivery", {"from": "priced"}),
        "order-in-kitchen": ("order.accepted", "accepted", "delivery", {"from": "submitted"}),
        "order-ready-to-pick-up": ("order.ready", "ready", "delivery", {"from": "preparing"}),
        "order-picked-up": ("order.completed", "completed", "pickup", {"how": "picked_up"}),
        "order-served": ("order.completed", "completed", "dine_in", {"how": "served"}),
        "order-canceled": ("order.cancelled", "cancelled", "delivery", {"by": "venue"}),
        "rider-created": ("delivery.requested", "accepted", "delivery", {"delivery_id": "d"}),
        "rider-picking": ("delivery.assigned", "accepted", "delivery", {"delivery_id": "d"}),
        "rider-delivering": ("delivery.picked_up", "handed_off", "delivery", {"delivery_id": "d"}),
        "rider-completed": ("delivery.delivered", "completed", "delivery", {"delivery_id": "d"}),
        "rider-error": ("delivery.failed", "ready", "delivery", {"delivery_id": "d"}),
        "rider-proof-delivery": ("delivery.proof_added", "completed", "delivery", {"proof": "x"}),
        "rider-refund": ("delivery.refund_requested", "completed", "delivery", {"refund": {}}),
    }
    assert set(cases) == set(SEED_002)
    for name, (ev_type, status, otype, data) in cases.items():
        expected = [name] if SEED_002[name][column] else []
        assert sent(ev_type, kind, status, otype, **data) == expected, (name, kind)


def test_envelope_and_special_payloads() -> None:
    [msg] = o.render(
        event("order.submitted", "submitted", **{"from": "priced"}),
        order("submitted"),
        Target("a", "pos"),
    )
    assert msg.payload == {
        "eventType": "order-accepted",
        "storeId": LOCATION_ID,
        "data": {"orderId": ORDER_ID},
    }
    [proof] = o.render(
        event("delivery.proof_added", "completed", proof={"image": "iVBORw0KGgo="}),
        order("completed"),
        Target("a", "channel"),
    )
    assert proof.payload["data"] == {"orderId": ORDER_ID, "proofDelivery": "iVBORw0KGgo="}
    refund = {
        "id": "r1",
        "date": "2026-01-02",
        "total_rider_refund": 350,
        "total_partner_refund": 350,
        "reason": "missing item",
        "refund_items": [
            {
                "reason": "missing",
                "rider_amount": 350,
                "partner_amount": 350,
                "party_at_fault": "restaurant",
                "items": [{"name": "Fries", "qty": 1}],
            }
        ],
        "refund_fees": [{"name": "delivery", "amount": 0, "code": "DLV"}],
    }
    [msg] = o.render(
        event("delivery.refund_requested", "completed", refund=refund),
        order("completed"),
        Target("a", "channel"),
    )
    assert msg.payload["eventType"] == "rider-refund"
    assert msg.payload["data"]["refund"] == {
        "id": "r1",
        "date": "2026-01-02",
        "totalRiderRefund": 350,
        "totalPartnerRefund": 350,
        "reason": "missing item",
        "refundItems": [
            {
                "reason": "missing",
                "riderAmount": 350,
                "partnerAmount": 350,
                "partyAtFault": "restaurant",
                "items": [{"name": "Fries", "qty": 1}],
            }
        ],
        "refundFees": [{"name": "delivery", "amount": 0, "code": "DLV"}],
    }


def test_conditions() -> None:
    # ready-to-pick-up only for delivery by the location; picked-up only for takeaway.
    assert sent("order.ready", "channel", "ready", "pickup") == []
    assert sent("order.completed", "channel", "completed", "delivery", how="delivered") == []
    # in-kitchen once: on accepted, or on preparing when accepted was skipped.
    assert sent("order.preparing", "channel", "preparing", **{"from": "accepted"}) == []
    assert sent("order.preparing", "channel", "preparing", **{"from": "submitted"}) == [
        "order-in-kitchen"
    ]
    # An order created already submitted is the POS's new-order notice.
    assert sent("order.created", "pos", "submitted") == ["order-accepted"]
    assert sent("order.created", "pos", "draft") == []
    # Facts and kds apps: nothing.
    assert sent("order.note", "channel", text="hi") == []
    assert sent("order.accepted", "kds", **{"from": "submitted"}) == []


def test_filter_names() -> None:
    assert validate_event_types("ordatic", ["rider-*", "order-canceled", "order.accepted"])
    with pytest.raises(ValidationError) as exc:
        validate_event_types("ordatic", ["order-eaten"])
    assert exc.value.fields["field"] == "event_types.0"
