"""The store's last committed orders (``SqlStore._recent``): an order change skips parsing
the stored document when the row's version still matches, and reads it when another
process (here: a second runtime on the same database) changed the order meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ordercast.domain.access import Principal
from ordercast.domain.order import Order
from ordercast.ports import Mutation
from ordercast.runtime import Runtime
from ordercast.settings import Settings
from ordercast.storage.sql import RECENT_ORDERS, SqliteStore
from support.world import make_channel_app


@pytest.fixture
async def two(database_url: str) -> AsyncIterator[tuple[Runtime, Runtime]]:
    settings = Settings(database_url=database_url, admin_token="admin-token")
    first = await Runtime.open(settings)
    second = await Runtime.open(settings)
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


async def _principal(rt: Runtime) -> tuple[Principal, str]:
    channel = await make_channel_app(rt)
    return channel.principal, channel.location_id


async def test_changes_from_two_processes_interleave(
    two: tuple[Runtime, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two
    principal, location_id = await _principal(a)
    order = await a.orders.create(
        principal,
        {"location_id": location_id, "items": [{"name": "B", "quantity": 1, "unit_price": 5}]},
    )
    parsed: list[Any] = []
    original = Order.from_dict.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Order], d: dict[str, Any]) -> Order:
        parsed.append(d)
        result: Order = original(cls, d)
        return result

    monkeypatch.setattr(Order, "from_dict", classmethod(counting))
    r1 = await a.orders.note(principal, order.id, text="one")  # a created it: no parse
    assert parsed == []
    r2 = await b.orders.note(principal, order.id, text="two")  # b has never seen it
    assert len(parsed) == 1
    r3 = await a.orders.note(principal, order.id, text="three")  # a's copy is stale
    assert len(parsed) == 2
    r4 = await a.orders.note(principal, order.id, text="four")  # a's copy is current
    assert len(parsed) == 2
    assert [r.order.version for r in (r1, r2, r3, r4)] == [2, 3, 4, 5]
    assert [r.order.phase for r in (r1, r2, r3, r4)] == ["one", "two", "three", "four"]
    stored = await b.store.get_order(order.id)
    assert stored == r4.order
    events = await b.store.list_events(order.id, 0, 100)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.data.get("text") for e in events[1:]] == ["one", "two", "three", "four"]


async def test_a_stale_copy_never_decides(two: tuple[Runtime, Runtime]) -> None:
    a, b = two
    principal, location_id = await _principal(a)
    order = await a.orders.create(
        principal, {"location_id": location_id, "items": [{"name": "B", "quantity": 1}]}
    )
    await b.orders.transition(principal, order.id, to="cancelled", reason="gone")
    # a still holds the submitted order; the stored one is cancelled: a note still works,
    # and accepting it is refused as for a cancelled order.
    with pytest.raises(Exception) as refused:
        await a.orders.transition(principal, order.id, to="accepted")
    assert refused.value.__class__.__name__ == "InvalidTransition"
    result = await a.orders.note(principal, order.id, text="after")
    assert result.order.status == "cancelled"
    assert result.order.version == 3


async def test_bounded() -> None:
    store = SqliteStore("sqlite:///:memory:")
    try:
        _fill(store, RECENT_ORDERS + 10)
    finally:
        await store.close()  # removes its temporary folder (a ResourceWarning otherwise)
    assert len(store._recent) == RECENT_ORDERS
    assert "o0" not in store._recent
    assert f"o{RECENT_ORDERS + 9}" in store._recent


@pytest.mark.parametrize("size", [0, 1, 50])
async def test_bounded_by_the_setting(database_url: str, size: int) -> None:
    """``ORDERCAST_ORDER_CACHE_SIZE`` reaches the store; the oldest committed go first."""
    settings = Settings(database_url=database_url, admin_token="t", order_cache_size=size)
    rt = await Runtime.open(settings)
    try:
        _fill(rt.store, size + 10)  # type: ignore[arg-type]
        kept = list(rt.store._recent)  # type: ignore[attr-defined]
    finally:
        await rt.close()
    assert kept == [f"o{i}" for i in range(10, size + 10)]


def _fill(store: SqliteStore, n: int) -> None:
    for i in range(n):
        order = Order(
            id=f"o{i}",
            tenant_id="t",
            location_id="l",
            status="submitted",
            version=1,
            type="pickup",
            created_at="c",
            updated_at="u",
        )
        store._committed(Mutation(order, events=[]))
