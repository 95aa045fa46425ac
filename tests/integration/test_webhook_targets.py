"""Each process keeps a location's webhook endpoints between order changes (storage/outbox.py
``targets``), valid while the database's ``webhook_targets`` revision stays put; triggers
bump it (migration 0007). Whatever changes who hears a location — an endpoint added,
changed, disabled or deleted, an app's locations granted or taken, by this process, another
node or plain SQL — the very next change written by any process follows it. Run on SQLite
and PostgreSQL, with two runtimes on one database (two nodes; no bus between them: the
database alone carries it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from ordercast.app import create_app
from ordercast.ports import EndpointTarget, Row
from ordercast.runtime import Runtime
from ordercast.settings import Settings
from ordercast.storage.outbox import SqlOutbox
from support.world import World, make_world


def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        admin_token="admin-token-for-tests",
        webhook_allow_cidrs="127.0.0.1/32",
    )


@pytest.fixture
async def node_a(database_url: str) -> AsyncIterator[World]:
    rt = await Runtime.open(settings(database_url))
    try:
        async for w in make_world(rt):
            yield w
    finally:
        await rt.close()


@pytest.fixture
async def node_b(node_a: World, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    rt = await Runtime.open(settings(database_url))
    try:
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
            yield http
    finally:
        await rt.close()


async def revision(w: World) -> int:
    async with w.runtime.store.engine.connect() as conn:
        q = sa.text("SELECT value FROM revisions WHERE name = 'webhook_targets'")
        return int((await conn.execute(q)).scalar_one())


async def test_the_next_change_on_any_node_follows_every_endpoint_change(
    node_a: World, node_b: httpx.AsyncClient
) -> None:
    w = node_a
    a, admin = w.http, w.admin
    pos = await w.new_app("pos")
    oid = (await w.order())["id"]
    notes = 0

    async def note_on_b() -> str:
        """A note written through node B; its event id."""
        nonlocal notes
        notes += 1
        r = await node_b.post(f"/v1/orders/{oid}/notes", headers=w.auth, json={"text": str(notes)})
        assert r.status_code == 200, r.text
        event_id: str = r.json()["events"][-1]["event_id"]
        return event_id

    async def add_endpoint(path: str) -> str:
        r = await a.post(
            f"/v1/apps/{pos['id']}/endpoints",
            headers=admin,
            json={"url": f"http://127.0.0.1:9/{path}", "dialect": "ordercast"},
        )
        assert r.status_code == 201, r.text
        endpoint_id: str = r.json()["id"]
        return endpoint_id

    async def heard(event_id: str) -> dict[str, str]:
        """{endpoint id: status} of the messages written for ``event_id``."""
        async with w.runtime.store.engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT endpoint_id, status FROM webhook_messages WHERE event_id = :e"),
                {"e": event_id},
            )
            return {r.endpoint_id: r.status for r in rows}

    ep1 = await add_endpoint("one")
    assert await heard(await note_on_b()) == {ep1: "pending"}  # B now keeps [ep1]
    assert await heard(await note_on_b()) == {ep1: "pending"}

    # Node A adds an endpoint: B's next change hears it.
    ep2 = await add_endpoint("two")
    assert await heard(await note_on_b()) == {ep1: "pending", ep2: "pending"}

    # Disabled on A: B writes its rows as skipped.
    r = await a.patch(
        f"/v1/apps/{pos['id']}/endpoints/{ep2}", headers=admin, json={"enabled": False}
    )
    assert r.status_code == 200, r.text
    assert await heard(await note_on_b()) == {ep1: "pending", ep2: "skipped"}

    # An event filter set on A.
    r = await a.patch(
        f"/v1/apps/{pos['id']}/endpoints/{ep1}",
        headers=admin,
        json={"event_types": ["order.accepted"]},
    )
    assert r.status_code == 200, r.text
    assert await heard(await note_on_b()) == {ep2: "skipped"}

    # Deleted on A.
    r = await a.delete(f"/v1/apps/{pos['id']}/endpoints/{ep2}", headers=admin)
    assert r.status_code == 204, r.text
    r = await a.patch(
        f"/v1/apps/{pos['id']}/endpoints/{ep1}", headers=admin, json={"event_types": None}
    )
    assert r.status_code == 200, r.text
    assert await heard(await note_on_b()) == {ep1: "pending"}

    # The app loses the location on A, then gets it back: B follows both.
    r = await a.patch(f"/v1/apps/{pos['id']}", headers=admin, json={"location_ids": []})
    assert r.status_code == 200, r.text
    assert await heard(await note_on_b()) == {}
    r = await a.patch(
        f"/v1/apps/{pos['id']}", headers=admin, json={"location_ids": [w.location_id]}
    )
    assert r.status_code == 200, r.text
    assert await heard(await note_on_b()) == {ep1: "pending"}

    # Plain SQL (another tool on the database): the triggers see it too.
    async with w.runtime.store.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE webhook_endpoints SET enabled = :off WHERE id = :id"),
            {"off": False, "id": ep1},
        )
    assert await heard(await note_on_b()) == {ep1: "skipped"}

    # What does not decide the targets (an order change, an endpoint's URL or failure
    # streak, as the delivery worker writes it) does not move the revision.
    before = await revision(w)
    await note_on_b()
    async with w.runtime.store.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE webhook_endpoints SET failing_since = 1.0, url = :u WHERE id = :id"),
            {"u": "http://127.0.0.1:9/elsewhere", "id": ep1},
        )
    assert await revision(w) == before


# -- the cache itself, against a scripted transaction -----------------------------------


class ScriptedTx:
    """A Tx answering the revision read and the join; counts the joins."""

    def __init__(self, revision: int | None, rows: list[dict[str, Any]]) -> None:
        self.revision = revision
        self.rows = rows
        self.joins = 0

    async def fetch_one(self, query: str, params: Any = None, /) -> Row | None:
        assert query == "webhook_targets_revision"
        return None if self.revision is None else (self.revision,)

    async def fetch_all(self, query: str, params: Any = None, /) -> list[Row]:
        assert query == "endpoints_for_location"
        self.joins += 1
        return list(self.rows)


def row(eid: str) -> dict[str, Any]:
    return {
        "id": eid,
        "app_id": "app_1",
        "dialect": "ordercast",
        "event_types": None,
        "enabled": True,
        "kind": "pos",
    }


async def test_targets_are_read_once_per_revision_and_location() -> None:
    outbox = SqlOutbox(None, None, None, 1)  # type: ignore[arg-type]
    tx = ScriptedTx(5, [row("ep_1")])

    async def targets(location: str = "loc_1") -> list[EndpointTarget]:
        return await outbox.targets(tx, "ten_1", location)  # type: ignore[arg-type]

    first = await targets()
    assert [t.id for t in first] == ["ep_1"] and tx.joins == 1
    assert await targets() is first and tx.joins == 1  # same revision: kept
    await targets("loc_2")
    assert tx.joins == 2  # another location: read
    tx.revision, tx.rows = 6, [row("ep_1"), row("ep_2")]
    assert [t.id for t in await targets()] == ["ep_1", "ep_2"] and tx.joins == 3
    # An older revision (a transaction that read it before another moved the cache on)
    # reads for itself and keeps nothing.
    tx.revision, tx.rows = 5, [row("ep_1")]
    assert [t.id for t in await targets()] == ["ep_1"] and tx.joins == 4
    tx.revision, tx.rows = 6, [row("ep_1"), row("ep_2")]
    assert [t.id for t in await targets()] == ["ep_1", "ep_2"] and tx.joins == 4
    # No revision row (a database before migration 0007): read every time.
    tx.revision = None
    await targets()
    await targets()
    assert tx.joins == 6
