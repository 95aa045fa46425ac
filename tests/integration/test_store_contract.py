"""One contract suite for the store, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from ordercast.domain.access import AppPrincipal
from ordercast.domain.events import EventRecord, NewEvent
from ordercast.domain.order import Order
from ordercast.errors import Conflict, NotFound
from support.world import World


def principal(w: World) -> AppPrincipal:
    return AppPrincipal(
        app_id=w.app["id"],
        tenant_id=w.tenant_id,
        kind="channel",
        location_ids=frozenset({w.location_id}),
    )


async def test_concurrent_writers_never_break_the_sequence(any_world: World) -> None:
    w = any_world
    orders = w.runtime.orders
    p = principal(w)
    oid = (await w.order())["id"]

    async def note(i: int) -> None:
        await orders.note(p, oid, text=f"note {i}")

    async def move(to: str) -> None:
        await orders.transition(p, oid, to=to)

    writers = [note(i) for i in range(40)]
    writers += [move(to) for to in ("accepted", "preparing", "ready", "accepted", "ready") * 4]
    await asyncio.gather(*writers)

    order = await w.runtime.store.get_order(oid)
    assert order is not None
    events = await w.runtime.store.list_events(oid, 0, 1000)
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(events) + 1)), "gap or duplicate in seq"
    assert order.version == len(events)
    assert len({e.event_id for e in events}) == len(events)
    assert sum(1 for e in events if e.type == "order.note") == 40
    assert order.status == "ready"
    # Each event records the status the order had right after it.
    assert events[-1].status == order.status


async def test_concurrent_orders_in_parallel(any_world: World) -> None:
    w = any_world
    p = principal(w)
    ids = [(await w.order())["id"] for _ in range(5)]
    await asyncio.gather(
        *[w.runtime.orders.note(p, oid, text=str(i)) for i in range(10) for oid in ids]
    )
    for oid in ids:
        events = await w.runtime.store.list_events(oid, 0, 100)
        assert [e.seq for e in events] == list(range(1, 12))


async def test_a_change_failing_among_concurrent_ones_rolls_back_alone(any_world: World) -> None:
    # Concurrent changes may share one transaction (SQLite's group commit): one that fails
    # after writing (here in a transaction hook, after its order update and events) must
    # leave nothing behind, and the others must commit with a gap-free seq.
    w = any_world
    p = principal(w)
    oid = (await w.order())["id"]

    async def hook(tx: object, order: object, events: list[EventRecord]) -> None:
        if any(e.data.get("text") == "boom" for e in events):
            raise RuntimeError("boom")

    w.runtime.store.add_tx_hook(hook)
    texts = ["a", "boom", "b", "boom", "c", "d"]
    results = await asyncio.gather(
        *[w.runtime.orders.note(p, oid, text=t) for t in texts], return_exceptions=True
    )
    assert [isinstance(r, RuntimeError) for r in results] == [t == "boom" for t in texts]
    events = await w.runtime.store.list_events(oid, 0, 100)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    notes = sorted(e.data["text"] for e in events if e.type == "order.note")
    assert notes == ["a", "b", "c", "d"]  # in any order: concurrent writers
    order = await w.runtime.store.get_order(oid)
    assert order is not None and order.version == len(events)


async def test_refused_command_writes_nothing(any_world: World) -> None:
    w = any_world
    p = principal(w)
    oid = (await w.order())["id"]
    await w.runtime.orders.transition(p, oid, to="cancelled")
    with pytest.raises(Conflict):
        await w.runtime.orders.transition(p, oid, to="ready")
    events = await w.runtime.store.list_events(oid, 0, 100)
    assert [e.type for e in events] == ["order.created", "order.cancelled"]


async def test_unknown_order_and_delivery(any_world: World) -> None:
    store = any_world.runtime.store
    assert await store.get_order("ord_nope") is None
    assert await store.order_id_for_delivery("dlv_nope") is None
    assert await store.list_events("ord_nope", 0, 10) == []
    with pytest.raises(NotFound, match="ord_nope"):
        await store.mutate_order("ord_nope", lambda o: None)


async def test_a_delivery_names_its_order_on_every_store(any_world: World) -> None:
    """The store remembers which order a delivery it created belongs to (a courier update
    resolves it before its transaction); another store on the same database (another node,
    a restart) finds it in the database, and a delivery nobody created stays unknown."""
    from ordercast.storage.sql import open_store

    w = any_world
    store = w.runtime.store
    p = principal(w)
    oid = (await w.order())["id"]
    await w.runtime.orders.transition(p, oid, to="accepted")
    _, delivery_id = await w.runtime.orders.start_delivery(p, oid, provider="couriers")
    assert await store.order_id_for_delivery(delivery_id) == oid
    other = open_store(w.runtime.settings.database_url)
    try:
        assert await other.order_id_for_delivery(delivery_id) == oid
        assert await other.order_id_for_delivery(delivery_id) == oid  # now remembered
        assert await other.order_id_for_delivery("dlv_nope") is None
    finally:
        await other.close()
    result = await w.runtime.orders.courier_update(p, delivery_id, status="courier_confirmed")
    assert result.order.id == oid and result.events


async def test_an_orders_columns_follow_its_document(any_world: World) -> None:
    """The order row's columns are written from the document at every change: the ones a
    change may alter (status, version, updated_at, external_order_ref), and — when a change
    alters them, which no command does today — the ones set at creation (user, location,
    tenant, creation time), which the list queries filter on."""
    import dataclasses

    from ordercast.domain.order import evolve
    from ordercast.ports import Mutation

    w = any_world
    store = w.runtime.store
    p = principal(w)
    oid = (await w.order())["id"]
    await w.runtime.orders.transition(p, oid, to="accepted")
    found = await store.list_orders(
        tenant_id=w.tenant_id,
        location_ids=None,
        user_id=None,
        status="accepted",
        updated_since=None,
        limit=10,
    )
    assert [o.id for o in found] == [oid]

    def reassign(order: Order) -> Mutation:
        after = dataclasses.replace(
            evolve(order, NewEvent("order.note", {"text": "moved"}), order.updated_at),
            user_id="user-moved",
        )
        record = EventRecord(
            event_id=f"evt_moved_{oid}",
            order_id=oid,
            seq=after.version,
            type="order.note",
            status=after.status,
            occurred_at=after.updated_at,
            recorded_at=after.updated_at,
            actor={"type": "system"},
            data={"text": "moved"},
        )
        return Mutation(order=after, events=[record])

    await store.mutate_order(oid, reassign)
    for user, expected in (("user-moved", [oid]), (None, [oid])):
        found = await store.list_orders(
            tenant_id=w.tenant_id,
            location_ids=None,
            user_id=user,
            status=None,
            updated_since=None,
            limit=10,
        )
        assert [o.id for o in found] == expected
    stored = await store.get_order(oid)
    assert stored is not None and stored.user_id == "user-moved" and stored.version == 3


async def test_meta_is_kept(any_world: World) -> None:
    store = any_world.runtime.store
    assert await store.insert_meta("k-contract", "one") is True
    assert await store.insert_meta("k-contract", "two") is False
    assert await store.get_meta("k-contract") == "one"
    await store.put_meta("k-contract", "three")
    assert await store.get_meta("k-contract") == "three"


async def test_a_hook_breaking_a_constraint_is_reported_as_what_it_is(any_world: World) -> None:
    """An integrity violation raised by a transaction hook (here the POS timers' own
    statement writing a timer twice: uq_timers_order_kind) is neither "order already
    exists" nor retried 20 times as "too many writers": one attempt, an IntegrityViolation
    naming the constraint, nothing written; REST answers 500 internal_error (storage
    errors are internal). Before: create said 409 "already exists", a change was retried
    20 times and answered 409 "too many writers"."""
    from ordercast.errors import IntegrityViolation
    from ordercast.ports import Mutation, Tx

    w = any_world
    store = w.runtime.store
    p = principal(w)
    calls: list[str] = []

    async def hook(tx: Tx, order: Order, events: list[EventRecord]) -> None:
        if any(
            e.data.get("text") == "clash" or e.data.get("order", {}).get("notes") == "clash"
            for e in events
        ):
            calls.append(events[0].type)
            for _ in range(2):
                await tx.execute(
                    "insert_timer",
                    {
                        "id": f"tmr_{len(calls)}_{_}",
                        "order_id": order.id,
                        "kind": "commit_timeout",
                        "due_at": 0.0,
                        "now": 0.0,
                    },
                )

    store.add_tx_hook(hook)
    oid = (await w.order())["id"]
    with pytest.raises(IntegrityViolation) as caught:
        await w.runtime.orders.note(p, oid, text="clash")
    assert caught.value.constraint in ("uq_timers_order_kind", "timers.order_id, timers.kind")
    assert caught.value.detail.startswith(f"order {oid} was not saved: ")
    assert "timers" in caught.value.detail and "writers" not in caught.value.detail
    assert calls == ["order.note"]  # tried once
    r = await w.http.post(f"/v1/orders/{oid}/notes", headers=w.auth, json={"text": "clash"})
    assert r.status_code == 500 and r.json()["code"] == "internal_error", r.text
    r = await w.http.post(
        "/v1/orders",
        headers=w.auth,
        json={
            "location_id": w.location_id,
            "items": [{"name": "x", "quantity": 1, "unit_price": 1}],
            "notes": "clash",
        },
    )
    assert r.status_code == 500 and r.json()["code"] == "internal_error", r.text
    assert calls == ["order.note", "order.note", "order.created"]
    events = await store.list_events(oid, 0, 100)
    assert [e.type for e in events] == ["order.created"]  # nothing of the refused changes
    # A real duplicate order is still "already exists".
    order = await store.get_order(oid)
    assert order is not None
    with pytest.raises(Conflict, match="already exists"):
        await store.create_order(Mutation(order, events))
