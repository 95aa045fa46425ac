"""ORDERCAST_OUTBOX_RENDER=worker: an order change's transaction keeps one row (the order as
committed, its events) and a delivery worker renders the webhook messages later. What the
worker writes must be exactly what the commit would have written: compared here, for several
orders changed at once, against a second outbox hook in commit mode registered on the same
store (it renders from the order in memory, inside the same transactions, and keeps what it
renders instead of inserting it). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from ordercast.delivery.outbox import OutboxHook
from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order
from ordercast.ports import ChangeRenderer, EndpointTarget, OutboxMessage, Tx
from ordercast.runtime import Runtime
from ordercast.storage.outbox import SqlOutbox
from support.webhooks import fresh_database_url, open_runtime
from support.world import World, basic, make_world


class Capture:
    """An outbox for a commit-mode hook: the real endpoints and subscribers, read in the
    order's transaction; the messages kept in memory instead of inserted."""

    claim_depth = 1

    def __init__(self, real: SqlOutbox) -> None:
        self.real = real
        self.messages: list[OutboxMessage] = []

    async def targets(self, tx: Tx, tenant_id: str, location_id: str) -> list[EndpointTarget]:
        return await self.real.targets(tx, tenant_id, location_id)

    async def subscribers(self, tx: Tx, order_id: str) -> set[str]:
        return await self.real.subscribers(tx, order_id)

    async def add(self, tx: Tx, messages: Sequence[OutboxMessage]) -> None:
        self.messages.extend(messages)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    async for url in fresh_database_url(request.param, tmp_path):
        yield url


@pytest.fixture
async def w(db_url: str) -> AsyncIterator[World]:
    async for rt in open_runtime(db_url, outbox_render="worker"):
        async for world in make_world(rt):
            yield world


async def rows(rt: Runtime, sql: str) -> list[Any]:
    async with rt.store.engine.connect() as conn:
        return list(await conn.execute(sa.text(sql)))


async def endpoint(w: World, **body: Any) -> str:
    r = await w.http.post(
        f"/v1/apps/{w.app['id']}/endpoints",
        headers=basic(w.app["key"], w.app["secret"]),
        json={"url": "http://127.0.0.1:9/hook", **body},
    )
    assert r.status_code == 201, r.text
    endpoint_id: str = r.json()["id"]
    return endpoint_id


async def test_the_worker_writes_what_the_commit_would_have(w: World) -> None:
    rt = w.runtime
    hook = rt.outbox_hook
    assert hook is not None and hook.defer and isinstance(hook.changes, SqlOutbox)
    capture = Capture(hook.changes)
    rt.store.add_tx_hook(OutboxHook(capture, rt.settings.base_url, ids=rt.ids))

    every = await endpoint(w, dialect="ordercast")
    await endpoint(w, dialect="ordatic")
    await endpoint(w, dialect="rbi")
    ready = await endpoint(w, dialect="ordercast", event_types=["order.ready"])  # a filter
    off = await endpoint(w, dialect="ordercast")
    r = await w.http.patch(
        f"/v1/apps/{w.app['id']}/endpoints/{off}", headers=w.admin, json={"enabled": False}
    )
    assert r.status_code == 200, r.text

    # Four orders moving at once: created, then each step of all four concurrently.
    orders = [(await w.order(notes=f"gate code {i}"))["id"] for i in range(4)]
    for to in ("accepted", "preparing", "ready"):
        moved = await asyncio.gather(*(w.move(oid, to) for oid in orders))
        assert all(m.status_code == 200 for m in moved), [m.text for m in moved]

    # Committed: one row per change, no message yet.
    assert len(await rows(rt, "SELECT pos FROM outbox_changes")) == 16
    assert await rows(rt, "SELECT id FROM webhook_messages") == []

    expanded = 0
    while n := await hook.expand(limit=5):  # several rounds, oldest first
        expanded += n
    assert expanded == 16
    assert await rows(rt, "SELECT pos FROM outbox_changes") == []

    written = await rows(
        rt,
        "SELECT endpoint_id, event_id, part, order_id, seq, event_type, wire_type, body, "
        "status, last_error, event_at FROM webhook_messages ORDER BY pos",
    )
    want = {
        (
            m.endpoint_id,
            m.event_id,
            m.part,
            m.order_id,
            m.seq,
            m.event_type,
            m.wire_type,
            m.body,
            m.status,
            m.last_error,
            m.event_at,
        )
        for m in capture.messages
    }
    got = [tuple(r) for r in written]
    per_endpoint: dict[str, int] = {}
    for m in capture.messages:
        per_endpoint[m.endpoint_id] = per_endpoint.get(m.endpoint_id, 0) + 1
    assert len(per_endpoint) == 5 and per_endpoint[every] == per_endpoint[off] == 16
    assert per_endpoint[ready] == 4
    assert len(got) == len(set(got)) and set(got) == want  # byte for byte, nothing else
    assert {r.status for r in written if r.endpoint_id == off} == {"skipped"}
    assert sum(b"gate code" in r.body.encode() for r in written) > 0

    # Inserted in commit order: every endpoint sees each order's changes in seq order.
    seqs: dict[tuple[str, str], list[int]] = {}
    for r in written:
        seqs.setdefault((r.endpoint_id, r.order_id), []).append(r.seq)
    assert len(seqs) == 5 * 4
    assert all(s == sorted(s) for s in seqs.values())


async def test_a_location_without_endpoints_keeps_nothing(w: World) -> None:
    order = await w.order()
    assert (await w.move(order["id"], "accepted")).status_code == 200
    assert await rows(w.runtime, "SELECT pos FROM outbox_changes") == []
    assert w.runtime.outbox_hook is not None
    assert await w.runtime.outbox_hook.expand() == 0


async def test_a_commit_mode_node_expands_what_a_worker_mode_node_deferred(
    w: World, db_url: str
) -> None:
    """Switching the setting back leaves no change behind: every delivery worker expands."""
    await endpoint(w, dialect="ordercast")
    order = await w.order()
    assert (await w.move(order["id"], "accepted")).status_code == 200
    async for other in open_runtime(db_url):  # outbox_render="commit"
        assert other.outbox_hook is not None and not other.outbox_hook.defer
        assert await other.outbox_hook.expand() == 2
    got = await rows(w.runtime, "SELECT event_type, seq FROM webhook_messages ORDER BY pos")
    assert [tuple(r) for r in got] == [("order.created", 1), ("order.accepted", 2)]


async def test_the_changes_waiting_are_a_metric(w: World) -> None:
    async def waiting() -> float:
        text = (await w.http.get("/metrics", headers=w.admin)).text
        line = next(
            x for x in text.splitlines() if x.startswith("ordercast_outbox_changes_waiting")
        )
        return float(line.split()[-1])

    await endpoint(w, dialect="ordercast")
    orders = [(await w.order())["id"] for _ in range(3)]
    assert (await w.move(orders[0], "accepted")).status_code == 200
    assert await waiting() == 4
    assert w.runtime.outbox_hook is not None
    assert await w.runtime.outbox_hook.expand() == 4
    assert await waiting() == 0


# -- rendering outside the write lock, and what happens when its inputs move meanwhile ------


def first_call(hook: OutboxHook, before: Callable[[], Awaitable[None]]) -> ChangeRenderer:
    """The hook's renderer, running ``before`` once, inside the read snapshot, first."""
    pending = [before]

    async def render(tx: Tx, order: Order, events: list[EventRecord]) -> list[OutboxMessage]:
        if pending:
            await pending.pop()()
        return await hook.messages(tx, order, events)

    return render


def rendezvous(db_url: str, parties: int) -> Callable[[], Awaitable[None]]:
    """Wait until ``parties`` snapshots are open at once. A SQLite snapshot runs on a thread
    and its body must not suspend (a thread barrier); a PostgreSQL one on the loop."""
    if db_url.startswith("sqlite"):
        barrier = threading.Barrier(parties, timeout=10)

        async def meet() -> None:
            barrier.wait()

        return meet
    gate = asyncio.Barrier(parties)

    async def meet_pg() -> None:
        await asyncio.wait_for(gate.wait(), 10)

    return meet_pg


async def messages_of(rt: Runtime) -> list[Any]:
    return await rows(
        rt,
        "SELECT endpoint_id, event_id, part, seq, order_id, body, status FROM webhook_messages "
        "ORDER BY pos",
    )


async def test_two_expanders_rendering_the_same_changes_write_them_once(
    w: World, db_url: str
) -> None:
    """Two workers open their snapshots at the same moment and render the same oldest rows:
    the first to write wins, the other finds a row gone, rolls back and renders the next
    rows under the lock. Nothing twice, nothing lost, each order in seq order."""
    rt = w.runtime
    hook = rt.outbox_hook
    assert hook is not None and isinstance(hook.changes, SqlOutbox)
    capture = Capture(hook.changes)
    rt.store.add_tx_hook(OutboxHook(capture, rt.settings.base_url, ids=rt.ids))
    await endpoint(w, dialect="ordercast")
    await endpoint(w, dialect="rbi")
    orders = [(await w.order(notes=f"gate code {i}"))["id"] for i in range(4)]
    for to in ("accepted", "preparing"):
        moved = await asyncio.gather(*(w.move(oid, to) for oid in orders))
        assert all(m.status_code == 200 for m in moved)
    assert len(await rows(rt, "SELECT pos FROM outbox_changes")) == 12

    async for other in open_runtime(db_url, outbox_render="worker"):
        assert other.outbox_hook is not None and isinstance(other.outbox_hook.changes, SqlOutbox)
        meet = rendezvous(db_url, 2)
        both = await asyncio.gather(
            hook.changes.expand(first_call(hook, meet), 5),
            other.outbox_hook.changes.expand(first_call(other.outbox_hook, meet), 5),
        )
        # One wrote the five it rendered, the other the next five, under the lock.
        assert sorted(both) == [5, 5]
        assert await hook.expand() == 2
    assert await rows(rt, "SELECT pos FROM outbox_changes") == []

    written = await messages_of(rt)
    got = [(r.endpoint_id, r.event_id, r.part, r.body, r.status) for r in written]
    want = [(m.endpoint_id, m.event_id, m.part, m.body, m.status) for m in capture.messages]
    assert len(got) == len(want) == 12 * 2
    assert sorted(got) == sorted(want)  # once each, the same bytes
    seqs: dict[tuple[str, str], list[int]] = {}
    for r in written:
        seqs.setdefault((r.endpoint_id, r.order_id), []).append(r.seq)
    assert len(seqs) == 2 * 4 and all(s == sorted(s) for s in seqs.values())


async def test_an_endpoint_changed_while_rendering_is_rendered_again(w: World, db_url: str) -> None:
    """An endpoint disabled after the snapshot was taken: the round rendered with the old
    endpoints is rolled back and rendered again inside the write transaction, so the
    messages follow the endpoints as the write commits them (skipped, not pending)."""
    rt = w.runtime
    hook = rt.outbox_hook
    assert hook is not None and isinstance(hook.changes, SqlOutbox)
    keep = await endpoint(w, dialect="ordercast")
    off = await endpoint(w, dialect="ordatic")
    orders = [(await w.order())["id"] for _ in range(3)]
    moved = await asyncio.gather(*(w.move(oid, "accepted") for oid in orders))
    assert all(m.status_code == 200 for m in moved)

    async def disable() -> None:  # another writer, while this round renders
        sql = "UPDATE webhook_endpoints SET enabled = {} WHERE id = '" + off + "'"
        if db_url.startswith("sqlite"):
            conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
            with conn:
                conn.execute(sql.format(0))
            conn.close()
        else:
            import asyncpg  # type: ignore[import-untyped]

            conn_pg = await asyncpg.connect(db_url)
            try:
                await conn_pg.execute(sql.format("false"))
            finally:
                await conn_pg.close()

    assert await hook.changes.expand(first_call(hook, disable), 100) == 6
    written = await messages_of(rt)
    status = {(r.endpoint_id, r.status) for r in written}
    assert status == {(keep, "pending"), (off, "skipped")}
