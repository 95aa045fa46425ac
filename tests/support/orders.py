"""A sample order as the domain holds it: items with nested options and totals, a consumer
with an address, a courier delivery (the unit tests' shared fixture)."""

from __future__ import annotations

from ordercast.domain.lifecycle import CourierStatus, OrderStatus
from ordercast.domain.order import Delivery, Order, with_totals


def sample_order() -> Order:
    return Order(
        id="ord_1",
        tenant_id="ten_1",
        location_id="loc_1",
        status=OrderStatus.READY.value,
        version=7,
        type="delivery",
        created_at="2026-01-01T00:00:00.000000Z",
        updated_at="2026-01-01T00:05:00.000000Z",
        items=with_totals(
            [
                {
                    "uuid": "i1",
                    "pos_id": "burger",
                    "name": "Burger",
                    "quantity": 2,
                    "unit_price": 900,
                    "options": [{"name": "Extras", "variants": [{"name": "Bacon", "price": 150}]}],
                }
            ]
        ),
        consumer={"name": "Ada", "address": {"city": "X", "lines": ["1", "2"]}},
        deliveries={
            "dlv_1": Delivery(
                id="dlv_1",
                order_id="ord_1",
                status=CourierStatus.PICKED_UP.value,
                provider="p",
                created_at="2026-01-01T00:01:00.000000Z",
                updated_at="2026-01-01T00:05:00.000000Z",
            )
        },
    )
