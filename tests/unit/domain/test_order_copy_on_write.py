"""``evolve`` copies on write and never changes its input; ``to_dict`` is a deep copy and
``as_dict`` the same values without copies."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from ordercast.domain import events as ev
from ordercast.domain.lifecycle import CourierStatus, OrderStatus
from ordercast.domain.order import Delivery, Order, evolve, with_totals
from ordercast.domain.pos_flow import PosState


def _order() -> Order:
    items = with_totals(
        [
            {
                "uuid": "i1",
                "name": "Burger",
                "quantity": 2,
                "unit_price": 900,
                "options": [
                    {"name": "Extras", "variants": [{"name": "Bacon", "price": 150}]},
                    {"name": "Sauce", "variants": [{"name": "BBQ", "price": 0}]},
                ],
                "tags": ["hot"],
            },
            {"uuid": "i2", "name": "Fries", "quantity": 1, "unit_price": 350, "options": []},
        ]
    )
    return Order(
        id="ord_1",
        tenant_id="ten_1",
        location_id="loc_1",
        status=OrderStatus.SUBMITTED.value,
        version=3,
        type="delivery",
        created_at="2026-01-01T00:00:00.000000Z",
        updated_at="2026-01-01T00:00:00.000000Z",
        items=items,
        surcounts=[{"name": "Tip", "value": 100}],
        consumer={"name": "Ada", "address": {"city": "X", "lines": ["1", "2"]}},
        errors=[{"code": "e", "message": "m"}],
        pos=PosState(callbacks={"price": "ok"}),
        deliveries={
            "dlv_1": Delivery(
                id="dlv_1",
                order_id="ord_1",
                status=CourierStatus.REQUESTED.value,
                provider="p",
                created_at="2026-01-01T00:00:00.000000Z",
                updated_at="2026-01-01T00:00:00.000000Z",
                location={"lat": 1.0, "lng": 2.0},
            )
        },
    )


def _reference_dict(order: Order) -> dict[str, Any]:
    """What the old ``to_dict`` gave: every field deep-copied (the POS state's fields flat,
    where they were fields of the order)."""
    d: dict[str, Any] = {}
    for f in dataclasses.fields(order):
        if f.name == "pos":
            d.update((key, copy.deepcopy(value)) for key, value in order.pos.items())
        else:
            d[f.name] = copy.deepcopy(getattr(order, f.name))
    d["deliveries"] = {
        k: {f.name: copy.deepcopy(getattr(v, f.name)) for f in dataclasses.fields(v)}
        for k, v in order.deliveries.items()
    }
    return d


def _ids(value: Any) -> set[int]:
    """Identities of every list and dict inside ``value``."""
    out: set[int] = set()
    if isinstance(value, dict):
        out.add(id(value))
        for v in value.values():
            out |= _ids(v)
    elif isinstance(value, list):
        out.add(id(value))
        for v in value:
            out |= _ids(v)
    return out


def test_to_dict_is_a_deep_copy_and_as_dict_has_the_same_values() -> None:
    order = _order()
    d = order.to_dict()
    assert d == _reference_dict(order)
    assert list(d) == list(_reference_dict(order))
    assert order.as_dict() == d
    assert list(order.as_dict()) == list(d)
    assert not (_ids(d) & _ids(_reference_dict(order)))
    for dl in order.deliveries.values():
        assert dl.location is not None
        assert id(dl.location) not in _ids(d)
    assert not (_ids(d["items"]) & _ids(order.items))
    assert Order.from_dict(d) == order


def test_evolve_never_changes_its_input() -> None:
    steps = [
        ev.NewEvent(ev.ORDER_NOTE, {"text": "Dave is on it"}),
        ev.NewEvent(
            ev.ORDER_ADJUSTED,
            {"removed_items": ["i2"], "removed_options": ["Sauce"], "available_eta": "soon"},
        ),
        ev.NewEvent("delivery.requested", {"delivery_id": "dlv_2", "provider": "q"}),
        ev.NewEvent(ev.DELIVERY_LOCATION_UPDATED, {"delivery_id": "dlv_1", "location": {"lat": 3}}),
        ev.NewEvent(ev.DELIVERY_PROOF_ADDED, {"delivery_id": "dlv_2", "proof": {"pin": "1"}}),
        ev.NewEvent(ev.DELIVERY_REFUND_REQUESTED, {"delivery_id": "dlv_2", "refund": {"a": 1}}),
        ev.NewEvent(ev.DELIVERY_ETA_UPDATED, {"delivery_id": "dlv_1", "eta": "later"}),
        ev.NewEvent(ev.ORDER_ERROR, {"errors": [{"code": "x", "message": "y"}]}),
        ev.NewEvent(ev.ORDER_CANCEL_REQUESTED, {"reason": "r", "by": "customer"}),
        ev.NewEvent(ev.ORDER_ETA_UPDATED, {"available_eta": "at noon"}),
        ev.NewEvent(ev.order_state_event(OrderStatus.ACCEPTED), {"pos_callback": "commit"}),
        ev.NewEvent(ev.order_state_event(OrderStatus.HELD), {"fire_at": "2026-01-02T00:10:00Z"}),
        ev.NewEvent(ev.ORDER_FIRE_REQUESTED, {"by": "app"}),
        ev.NewEvent(ev.order_state_event(OrderStatus.CANCELLED), {"reason": "r", "by": "venue"}),
    ]
    order = _order()
    for step in steps:
        before = copy.deepcopy(order)
        after = evolve(order, step, "2026-01-02T00:00:00.000000Z")
        assert order == before, step.type
        assert after is not order
        assert after.version == order.version + 1
        order = after
    assert [i["uuid"] for i in order.items] == ["i1"]
    assert [o["name"] for o in order.items[0]["options"]] == ["Extras"]
    assert order.items[0]["total_before_surcounts"] == 2 * (900 + 150)
    assert set(order.deliveries) == {"dlv_1", "dlv_2"}
    assert order.deliveries["dlv_1"].location == {"lat": 3}
    assert order.deliveries["dlv_1"].eta == "later"
    assert order.deliveries["dlv_2"].proof == {"pin": "1"}
    assert order.pos_callbacks["commit"] == "None"
    assert (order.fire_at, order.fired_by) == ("2026-01-02T00:10:00Z", "app")
    assert order.status == OrderStatus.CANCELLED.value
    # the first order is still as it was built
    assert _order() == _order()
    first = _order()
    evolve(first, steps[1], "t")
    assert first == _order()
