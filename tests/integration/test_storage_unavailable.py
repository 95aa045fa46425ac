"""The database down is a 503 with Retry-After, not a 500, and a retried request loses
nothing once it is back.

PostgreSQL is the real one, reached through a TCP forwarder the test takes down (every
open connection reset, the port refusing new ones) and brings back on the same port; the
runtime keeps both of its pools (asyncpg for order writes, SQLAlchemy for the rest)
across the outage. A SQLite file is locked the way another process locks it: a second
connection holding the write lock past ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from ordercast.protocols.pusher.auth import sign_channel
from ordercast.runtime import Runtime
from ordercast.settings import Settings
from support.doshii import doshii_jwt
from support.proxy import TcpProxy
from support.stomp import raw_client
from support.world import World, make_world

PROBLEM = "application/problem+json"


def _unavailable(r: httpx.Response, code: str, port: int | None = None) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["retry-after"] == "5"
    body = r.json()
    assert body["code"] == code and body["status"] == 503
    assert body["type"] == f"urn:ordercast:error:{code}"
    if port is not None:  # the driver's words (host, port) stay in the log
        assert str(port) not in r.text


@pytest.fixture
async def proxied(pg_url: str) -> AsyncIterator[tuple[World, TcpProxy]]:
    host_port = pg_url.rpartition("@")[2].partition("/")[0]
    host, _, port = host_port.partition(":")
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    url = pg_url.replace(f"@{host_port}/", f"@127.0.0.1:{proxy.port}/")
    rt = await Runtime.open(Settings(database_url=url, admin_token="admin-token-for-tests"))
    try:
        async for world in make_world(rt):
            yield world, proxy
    finally:
        await rt.close()
        await proxy.stop()


async def test_postgresql_down_answers_503_and_the_retried_write_is_kept(
    proxied: tuple[World, TcpProxy],
) -> None:
    w, proxy = proxied
    order = await w.order()
    oid = order["id"]
    note = {"text": "no onions"}

    await proxy.stop()  # the database host goes away
    _unavailable(
        await w.http.post(f"/v1/orders/{oid}/notes", headers=w.auth, json=note),
        "storage_unavailable",
        proxy.port,
    )
    _unavailable(  # an order write through the asyncpg pool
        await w.http.post(
            "/v1/orders",
            headers=w.auth,
            json={
                "location_id": w.location_id,
                "type": "pickup",
                "items": [{"name": "Fries", "quantity": 1, "unit_price": 350}],
            },
        ),
        "storage_unavailable",
        proxy.port,
    )
    # Through SQLAlchemy: a read, and an admin write.
    _unavailable(await w.http.get(f"/v1/orders/{oid}", headers=w.auth), "storage_unavailable")
    _unavailable(
        await w.http.post("/v1/tenants", headers=w.admin, json={"name": "T2"}),
        "storage_unavailable",
    )
    # The Pusher auth endpoint answers in its own shape.
    r = await w.http.post(
        "/api/v1/pusher/auth",
        params={"key": w.app["key"], "secret": w.app["secret"]},
        data={"socket_id": "1.2", "channel_name": f"private-o-{oid}"},
    )
    assert (r.status_code, r.headers["retry-after"]) == (503, "5"), r.text
    assert r.json()["code"] == "storage_unavailable" and str(proxy.port) not in r.text
    # So does the Doshii Partner API.
    doshii = {
        "Authorization": f"Bearer {doshii_jwt(w.app['key'], w.app['secret'])}",
        "doshii-location-id": w.location_id,
    }
    r = await w.http.get("/partner/v3/orders", headers=doshii)
    assert (r.status_code, r.headers["retry-after"]) == (503, "5"), r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["code"] == "storage_unavailable" and str(proxy.port) not in r.text
    for path in ("/health", "/ready"):
        r = await w.http.get(path)
        assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
        assert r.json()["detail"] == "storage: storage_unavailable"

    await proxy.start()  # back, same address: the pools reconnect on their own
    assert (await w.http.get("/health")).json() == {"status": "ok"}
    r = await w.http.post(f"/v1/orders/{oid}/notes", headers=w.auth, json=note)
    assert r.status_code == 200, r.text
    events = (await w.http.get(f"/v1/orders/{oid}/events", headers=w.auth)).json()["events"]
    # Nothing of the refused attempts was written; the retry was, once.
    assert [(e["seq"], e["type"]) for e in events] == [(1, "order.created"), (2, "order.note")]
    assert events[1]["data"] == {"text": "no onions"}
    assert (await w.http.post("/v1/tenants", headers=w.admin, json={"name": "T2"})).is_success


async def _pusher_event(ws: websockets.ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    message["data"] = json.loads(message["data"])
    return message


async def test_postgresql_down_the_gateways_say_try_again_later(
    proxied: tuple[World, TcpProxy],
) -> None:
    w, proxy = proxied
    rt = w.runtime
    await rt.gateway.start(port=0)
    kds = await w.new_app("kds")  # never seen by a gateway: its first socket reads storage
    pusher_url = f"{rt.gateway.url()}/app/{w.app['key']}?protocol=7"
    async with contextlib.AsyncExitStack() as stack:
        # A Pusher socket opened before the outage (its app is loaded and cached).
        open_ws = await stack.enter_async_context(websockets.connect(pusher_url))
        hello = await _pusher_event(open_ws)
        assert hello["event"] == "pusher:connection_established"
        socket_id = hello["data"]["socket_id"]
        unknown = f"private-o-{rt.ids.new_id('ord_')}"  # whose it is must be read

        async def subscribe() -> dict[str, Any]:
            auth = sign_channel(w.app["key"], w.app["secret"], socket_id, unknown)
            data = {"channel": unknown, "auth": auth}
            await open_ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))
            return await _pusher_event(open_ws)

        await proxy.stop()
        # STOMP: the CONNECT's app is read from storage: ERROR, close 1013 (try again later).
        async with raw_client(rt.gateway.url("/ws")) as c:
            error = await c.connect(kds["key"], kds["secret"])
            assert (error.command, error.headers["message"]) == ("ERROR", "storage unavailable")
            assert await c.closed() == 1013
        # Pusher, a new socket: pusher:error 4100 (reconnect after backing off), then close.
        async with websockets.connect(f"{rt.gateway.url()}/app/{kds['key']}?protocol=7") as ws:
            error_event = await _pusher_event(ws)
            assert error_event["event"] == "pusher:error"
            assert error_event["data"]["code"] == 4100
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4100
        # Pusher, the open socket: the subscription is refused for now (503), not left hanging.
        refused = await subscribe()
        assert refused["event"] == "pusher:subscription_error" and refused["channel"] == unknown
        assert refused["data"]["status"] == 503

        await proxy.start()
        assert (await subscribe())["data"]["status"] == 404  # read now: no such order
        async with raw_client(rt.gateway.url("/ws")) as c:
            assert (await c.connect(kds["key"], kds["secret"])).command == "CONNECTED"
            receipt = await c.subscribe(f"/kds/{w.tenant_id}/{w.location_id}")
            assert receipt.command == "RECEIPT"
        async with websockets.connect(f"{rt.gateway.url()}/app/{kds['key']}?protocol=7") as ws:
            assert (await _pusher_event(ws))["event"] == "pusher:connection_established"


async def test_a_sqlite_file_locked_by_another_process_answers_503_until_released(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ordercast.db"
    rt = await Runtime.open(
        Settings(database_url=f"sqlite:///{path}", admin_token="admin-token-for-tests")
    )
    other = sqlite3.connect(path, isolation_level=None)
    try:
        async for w in make_world(rt):
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            try:
                # Waits out busy_timeout (5 s), then gives up.
                r = await w.http.post("/v1/tenants", headers=w.admin, json={"name": "T2"})
                _unavailable(r, "storage_busy")
            finally:
                other.execute("ROLLBACK")
            r = await w.http.post("/v1/tenants", headers=w.admin, json={"name": "T2"})
            assert r.status_code == 201, r.text
            tenants: Any = other.execute("SELECT count(*) FROM tenants WHERE name = 'T2'")
            assert tenants.fetchone() == (1,)
    finally:
        other.close()
        await rt.close()
