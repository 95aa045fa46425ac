"""Two nodes in one process (PostgreSQL + Redis, their own key prefix).

* A node that dies between committing an order change and publishing its wake-up leaves no
  gap: when a live node reaps it, every node catches up from storage by seq, so a Pusher
  subscriber on the other node gets the change it was never woken for — once. (The dead node
  is simulated exactly: its bus publish is dropped for one change, then its heartbeats stop
  without a clean leave: its cluster tasks are cancelled, as by SIGKILL.)
* A change whose wake-up never went out, followed by a change that does go out (the node
  lived on, or two nodes' messages crossed): the receiving node sees the hole in the order's
  seqs and reads the missing events from storage, so subscribers get every event in order
  at once, without waiting for a node to be reaped.
* A presence member that leaves one node and is back on another within the webhook hold
  (1 s) gets no member_removed webhook, and the channel no channel_vacated: the held events
  are re-checked against the cluster's roster when due."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import websockets

from ordercast.ports import BusMessage
from ordercast.protocols.pusher import sign_channel
from ordercast.runtime import Runtime
from support.cluster import two_nodes
from support.webhooks import Receiver, wait_for
from support.world import make_channel_app


class DroppedBus:
    """A publish that never happens: the node died right after its commit."""

    async def publish(self, message: BusMessage) -> None:
        return None


@pytest.fixture
async def nodes(pg_url: str, redis_url: str) -> AsyncIterator[tuple[Runtime, Runtime]]:
    async with two_nodes(
        pg_url,
        redis_url,
        gateways=True,
        secret_key="catch-up-test-secret-key",
        cluster_heartbeat=0.2,
        cluster_node_timeout=1.0,
        webhook_allow_cidrs="127.0.0.0/8",
        webhook_poll_seconds=0.1,
    ) as (a, b):
        yield a, b


async def test_a_dead_nodes_unannounced_change_reaches_subscribers_once(
    nodes: tuple[Runtime, Runtime],
) -> None:
    a, b = nodes
    app = await make_channel_app(a)
    order = await a.orders.create(
        app.principal,
        {
            "location_id": app.location_id,
            "type": "pickup",
            "items": [{"pos_id": "b", "name": "B", "quantity": 1, "unit_price": 100}],
            "consumer": {"name": "Ada"},
        },
    )
    channel = f"private-o-{order.id}"
    seqs: list[int] = []
    async with websockets.connect(f"{b.gateway.url()}/app/{app.key}?protocol=7") as ws:
        hello = json.loads(await ws.recv())
        socket_id = json.loads(hello["data"])["socket_id"]
        auth = sign_channel(app.key, app.secret, socket_id, channel)
        await ws.send(
            json.dumps({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}})
        )

        async def read_until(seq: int, within: float) -> bool:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                try:
                    raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                except TimeoutError:
                    return False
                msg = json.loads(raw)
                if msg.get("channel") == channel and not msg["event"].startswith("pusher"):
                    seqs.append(json.loads(msg["data"])["seq"])
                    if seqs[-1] >= seq:
                        return True
            return False

        # A change on node A reaches the subscriber on node B through Redis.
        await a.orders.note(app.principal, order.id, text="on the grill")
        assert await read_until(2, 10)
        # Node A commits a change and dies before its wake-up goes out.
        a.orders.bus = DroppedBus()  # type: ignore[assignment]
        await a.orders.note(app.principal, order.id, text="never announced")
        assert not await read_until(3, 0.5)  # nothing woke node B
        cluster_a = a.pusher.cluster
        cluster_b = b.pusher.cluster
        assert sorted(await cluster_b.connections()) == sorted(
            [cluster_a.node_id, cluster_b.node_id]
        )
        assert (await cluster_b.connections())[cluster_b.node_id] == 1
        for task in cluster_a._tasks:  # SIGKILL: no more beats, no clean leave
            task.cancel()
        cluster_a._tasks = []
        # B reaps A within timeout + beat and every node catches up from storage.
        assert await read_until(3, 10), seqs
        assert not await read_until(4, 0.5)
    assert seqs[-2:] == [2, 3] and seqs.count(3) == 1
    assert [n.node_id for n in await cluster_b.nodes()] == [cluster_b.node_id]


async def test_a_hole_in_an_orders_seqs_is_filled_from_storage_at_once(
    nodes: tuple[Runtime, Runtime],
) -> None:
    a, b = nodes
    app = await make_channel_app(a)
    orders = [
        await a.orders.create(
            app.principal,
            {
                "location_id": app.location_id,
                "type": "pickup",
                "items": [{"pos_id": "b", "name": "B", "quantity": 1, "unit_price": 100}],
                "consumer": {"name": name},
            },
        )
        for name in ("Ada", "Bo")
    ]
    channels = {f"private-o-{o.id}": o for o in orders}
    seqs: dict[str, list[int]] = {name: [] for name in channels}
    async with websockets.connect(f"{b.gateway.url()}/app/{app.key}?protocol=7") as ws:
        hello = json.loads(await ws.recv())
        socket_id = json.loads(hello["data"])["socket_id"]
        for name in channels:
            auth = sign_channel(app.key, app.secret, socket_id, name)
            await ws.send(
                json.dumps({"event": "pusher:subscribe", "data": {"channel": name, "auth": auth}})
            )

        async def read_until(seq: int, within: float) -> bool:
            deadline = time.monotonic() + within
            while not all(got and got[-1] >= seq for got in seqs.values()):
                try:
                    raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                except TimeoutError:
                    return False
                msg = json.loads(raw)
                if msg.get("channel") in seqs and not msg["event"].startswith("pusher"):
                    seqs[msg["channel"]].append(json.loads(msg["data"])["seq"])
            return True

        for order in orders:
            await a.orders.note(app.principal, order.id, text="on the grill")
        assert await read_until(2, 10), seqs
        bus = a.orders.bus
        a.orders.bus = DroppedBus()  # type: ignore[assignment]
        for order in orders:
            await a.orders.note(app.principal, order.id, text="never announced")
        a.orders.bus = bus
        for order in orders:
            await a.orders.note(app.principal, order.id, text="announced")
        # Both nodes are alive (no reaping, no lagged listener): only the hole says it.
        assert await read_until(4, 5), seqs
    for name, got in seqs.items():
        assert got[got.index(2) :] == [2, 3, 4], (name, got)
    assert b.hub.holes_filled == 2


async def _presence_socket(
    rt: Runtime, key: str, secret: str, channel: str, user_id: str
) -> websockets.ClientConnection:
    ws = await websockets.connect(f"{rt.gateway.url()}/app/{key}?protocol=7")
    hello = json.loads(await ws.recv())
    socket_id = json.loads(hello["data"])["socket_id"]
    data = json.dumps({"user_id": user_id, "user_info": {"name": user_id}})
    auth = sign_channel(key, secret, socket_id, channel, data)
    await ws.send(
        json.dumps(
            {
                "event": "pusher:subscribe",
                "data": {"channel": channel, "auth": auth, "channel_data": data},
            }
        )
    )
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg["event"] == "pusher_internal:subscription_succeeded":
            return ws


async def test_a_member_back_on_another_node_within_the_hold_is_not_removed(
    nodes: tuple[Runtime, Runtime],
) -> None:
    a, b = nodes
    receiver = Receiver()
    await receiver.start()
    try:
        await a.start_delivery()
        app = await make_channel_app(a)
        assert a.webhooks is not None
        await a.webhooks.create_endpoint(
            app.principal, app.app_id, url=f"{receiver.url}", dialect="pusher"
        )
        channel = f"presence-r-{app.location_id}"

        def hooks() -> list[tuple[str, str | None]]:
            return [
                (e["name"], e.get("user_id"))
                for item in receiver.received
                for e in item.json["events"]
                if e.get("channel") == channel
            ]

        first = await _presence_socket(a, app.key, app.secret, channel, "ada")
        await wait_for(lambda: ("member_added", "ada") in hooks(), 15, "member_added")
        # Ada's page reloads: her socket on node A closes, the new one lands on node B.
        await first.close()
        second = await _presence_socket(b, app.key, app.secret, channel, "ada")
        await asyncio.sleep(2.5)  # past the 1 s hold and a delivery poll
        assert ("member_removed", "ada") not in hooks()
        assert ("channel_vacated", None) not in hooks()
        # Her real leave is reported, once.
        await second.close()
        await wait_for(lambda: ("channel_vacated", None) in hooks(), 15, "channel_vacated")
        assert hooks().count(("member_removed", "ada")) == 1
        assert hooks().count(("channel_occupied", None)) in (1, 2)  # B may count first
    finally:
        await receiver.stop()
