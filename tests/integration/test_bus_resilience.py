"""The Redis bus never dies silently, and two deployments on one Redis never hear each other.

Real Redis throughout: the shared server for the namespace, bad-message and ``CLIENT KILL``
tests (each with its own prefix; only this test's own connection is killed), and a
throwaway ``redis-server`` on a free port for the restart test (the shared server is never
restarted: other test runs use it). Two runtimes ("nodes") share one PostgreSQL database and
one Redis; orders are written on node A, a kitchen display and a customer app listen on node
B's STOMP gateway, and per order every message must arrive once, in seq order, across the
outage. The same gap for a pusher-js client is tests/e2e/test_bus_resilience_pusher.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from ordercast.app import create_app
from ordercast.bus import default_prefix, open_bus
from ordercast.bus.redis import RedisBus
from ordercast.ports import BusMessage
from ordercast.runtime import Runtime
from ordercast.settings import Settings
from support.cluster import open_node, two_nodes
from support.net import free_port
from support.services import REQUIRE_SERVICES
from support.stomp import RawClient, raw_client, start_stomp, user_token
from support.webhooks import wait_for
from support.world import World, make_world

USER = "u-bus"


@dataclass
class Nodes:
    a: Runtime
    b: Runtime
    world: World  # REST on node A
    kds: RawClient  # /kds/{tenant}/{venue} on node B
    user: RawClient  # /order-changes/{tenant}/{user} on node B


@contextlib.asynccontextmanager
async def stomp_nodes(database_url: str, bus_url: str) -> AsyncIterator[Nodes]:
    """Two nodes; REST on A, a KDS and a user subscribed over STOMP on B."""
    async with two_nodes(database_url, bus_url) as (a, b):
        async for world in make_world(a):
            await start_stomp(b)
            kds_app = await world.new_app("kds")
            token = await user_token(a, world.app, USER)
            async with (
                raw_client(b.gateway.url("/ws"), max_queue=512) as kds,
                raw_client(b.gateway.url("/ws"), max_queue=512) as user,
            ):
                assert (await kds.connect(kds_app["key"], kds_app["secret"])).command == (
                    "CONNECTED"
                )
                dest = f"/kds/{world.tenant_id}/{world.location_id}"
                assert (await kds.subscribe(dest)).command == "RECEIPT"
                assert (await user.connect(token)).command == "CONNECTED"
                mine = f"/order-changes/{world.tenant_id}/{USER}"
                assert (await user.subscribe(mine)).command == "RECEIPT"
                yield Nodes(a, b, world, kds, user)


async def step(world: World, ids: list[str], to: str) -> None:
    """Move every order to ``to`` and add a note (concurrently across orders); no note after
    a final state (the venue's KDS shows no closed order's notes)."""
    rs = await asyncio.gather(*(world.move(i, to) for i in ids))
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
    if to == "completed":
        return
    rs = await asyncio.gather(
        *(
            world.http.post(f"/v1/orders/{i}/notes", headers=world.auth, json={"text": to})
            for i in ids
        )
    )
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]


async def received(client: RawClient, count: int) -> dict[str, list[int]]:
    """Order id -> seqs of up to ``count`` messages (fewer if nothing comes for 5 s), then
    nothing more within 0.3 s."""
    got: dict[str, list[int]] = defaultdict(list)
    for n in range(count + 1):
        try:
            m = await client.expect("MESSAGE", wait=5 if n < count else 0.3)
        except TimeoutError:
            break
        got[m.headers["order-id"]].append(int(m.headers["seq"]))
    return dict(got)


async def expected(world: World, ids: list[str]) -> dict[str, list[int]]:
    out = {}
    for i in ids:
        r = await world.http.get(f"/v1/orders/{i}/events", headers=world.auth)
        out[i] = [e["seq"] for e in r.json()["events"]]
    return out


async def health(rt: Runtime) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=create_app(rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
        r = await http.get("/health")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# -- namespace (issue 12 item 5) -----------------------------------------------------------


def test_default_prefix_is_per_deployment() -> None:
    pg = "postgresql://postgres@127.0.0.1/shop"
    one = default_prefix("redis://127.0.0.1:6379/7", pg)
    assert one == default_prefix("redis://127.0.0.1:6379/7", pg)  # nodes of one deployment
    assert one != default_prefix("redis://127.0.0.1:6379/8", pg)  # another database number
    assert one != default_prefix("redis://127.0.0.1:6379/7", pg + "2")  # another storage
    assert default_prefix("redis://h/0", pg) == default_prefix("redis://h", pg)
    assert default_prefix("redis://h?db=3", pg) == default_prefix("redis://h/3", pg)
    assert one.startswith("ordercast:") and one.endswith(":") and len(one) == len("ordercast:") + 13
    with pytest.raises(ValueError, match="bus_prefix"):
        Settings(bus_prefix="has space")


async def test_two_deployments_on_one_redis_never_hear_each_other(
    redis_url: str, tmp_path: Any
) -> None:
    """Same Redis, same database number, two storage URLs: each deployment's gateway hears
    its own orders only, on its own channel. (Before: both used ``ordercast:bus``.)"""
    first = await open_node(f"sqlite:///{tmp_path}/one.db", redis_url, None)
    try:
        second = await open_node(f"sqlite:///{tmp_path}/two.db", redis_url, None)
    except BaseException:
        await first.close()
        raise
    try:
        assert isinstance(first.bus, RedisBus) and isinstance(second.bus, RedisBus)
        assert first.bus.channel != second.bus.channel
        assert first.bus.channel == f"{first.settings.prefix}bus"
        heard: dict[str, list[str]] = {"first": [], "second": []}

        async def listen(name: str, rt: Runtime) -> None:
            async for message in rt.bus.listen():
                if message.kind == "order":
                    heard[name].append(message.payload["order"]["id"])

        tasks = [
            asyncio.create_task(listen("first", first)),
            asyncio.create_task(listen("second", second)),
        ]
        try:
            mine: dict[str, list[str]] = {"first": [], "second": []}
            async for w1 in make_world(first):
                async for w2 in make_world(second):
                    for _ in range(3):
                        mine["first"].append((await w1.order())["id"])
                        mine["second"].append((await w2.order())["id"])
            await wait_for(lambda: all(len(heard[k]) >= 3 for k in heard), 15, "own orders")
            await asyncio.sleep(0.2)  # anything of the other deployment would be here by now
            assert heard == mine
        finally:
            for task in tasks:
                task.cancel()
    finally:
        await second.close()
        await first.close()


# -- a bus that never dies silently (issue 11) ---------------------------------------------


async def test_a_message_that_is_not_ours_is_logged_and_the_pump_lives(redis_url: str) -> None:
    prefix = f"ordercast-test:{secrets.token_hex(4)}"
    bus = open_bus(redis_url, prefix)
    assert isinstance(bus, RedisBus)
    await bus.start()
    raw = aioredis.from_url(redis_url)
    try:
        listener = bus.listen()
        for junk in (b"not json", b'{"kind": 1}', b"[1,2]", b'{"kind":"order","payload":3}'):
            await raw.publish(bus.channel, junk)
        await bus.publish(BusMessage("order", {"n": 1}))
        got = await asyncio.wait_for(anext(aiter(listener)), 5)
        assert got == BusMessage("order", {"n": 1})
        assert bus.bad_messages == 4 and bus.down_reason is None and not listener.lagged
    finally:
        await raw.aclose()
        await bus.close()


async def test_client_kill_node_b_misses_nothing(pg_url: str, redis_url: str) -> None:
    """Node B's bus connection is killed (``CLIENT KILL ID``) while node A writes: B's pump
    logs it, reports ``degraded`` on /health, reconnects, and its subscribers get every
    event written meanwhile from storage, once, in seq order per order."""
    async with stomp_nodes(pg_url, redis_url) as n:
        bus_b = n.b.bus
        assert isinstance(bus_b, RedisBus)
        bus_b.min_backoff = 1.0  # a gap long enough to write into
        ids = [(await n.world.order(user_id=USER))["id"] for _ in range(3)]
        await step(n.world, ids, "accepted")
        admin = aioredis.from_url(redis_url)
        try:
            clients = [
                c
                for c in await admin.client_list()
                if c.get("name") == bus_b.client_name and int(c.get("sub", 0)) > 0
            ]
            assert len(clients) == 1, clients
            await admin.client_kill_filter(_id=clients[0]["id"])
        finally:
            await admin.aclose()
        await wait_for(lambda: bus_b.down_reason is not None, 15, "node B to notice")
        during = await health(n.b)
        assert during["status"] == "degraded" and "bus:" in during["reasons"][0], during
        await step(n.world, ids, "preparing")  # published while B is not subscribed
        await wait_for(lambda: bus_b.down_reason is None, 15, "node B to reconnect")
        await step(n.world, ids, "ready")
        await step(n.world, ids, "completed")
        want = await expected(n.world, ids)
        total = sum(map(len, want.values()))
        for client in (n.kds, n.user):
            got = await received(client, total)
            assert got == want, f"got {got}\nwant {want}"
        assert n.b.hub.catch_ups >= 1 and bus_b.reconnects >= 1
        assert (await health(n.b))["status"] == "ok"


async def test_redis_restart_node_b_misses_nothing(pg_url: str, tmp_path: Any) -> None:
    """A throwaway redis-server is stopped while node A writes (A's publishes fail and are
    logged; the events are committed) and started again on the same port: node B's
    subscribers get everything once, in seq order."""
    binary = shutil.which("redis-server")
    if binary is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is not installed and ORDERCAST_REQUIRE_SERVICES=1")
        pytest.skip("redis-server is not installed")
    port = free_port()
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]

    async def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        probe = aioredis.from_url(f"redis://127.0.0.1:{port}/0")

        async def up() -> bool:
            try:
                return bool(await probe.ping())
            except Exception:
                return False

        try:
            await wait_for(up, 15, "redis-server to start")
        finally:
            await probe.aclose()
        return proc

    proc = await start_redis()
    try:
        async with stomp_nodes(pg_url, f"redis://127.0.0.1:{port}/0") as n:
            bus_b = n.b.bus
            assert isinstance(bus_b, RedisBus)
            ids = [(await n.world.order(user_id=USER))["id"] for _ in range(3)]
            await step(n.world, ids, "accepted")
            proc.terminate()
            proc.wait(timeout=10)
            await wait_for(lambda: bus_b.down_reason is not None, 15, "node B to notice")
            await step(n.world, ids, "preparing")  # committed; the publishes fail
            assert (await health(n.b))["status"] == "degraded"
            proc = await start_redis()
            await wait_for(lambda: bus_b.down_reason is None, 15, "node B to reconnect")
            await step(n.world, ids, "ready")
            await step(n.world, ids, "completed")
            want = await expected(n.world, ids)
            total = sum(map(len, want.values()))
            for client in (n.kds, n.user):
                got = await received(client, total)
                assert got == want, f"got {got}\nwant {want}"
            assert n.b.hub.catch_ups >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
