"""The Redis bus's gap, seen by a real client: a pusher-js subscriber on node B misses nothing
while B's bus connection is down (two nodes in one process on PostgreSQL + Redis; the
STOMP side of the same gap is in tests/integration/test_bus_resilience.py)."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Any

import httpx
import redis.asyncio as aioredis

from ordercast.app import create_app
from ordercast.bus.redis import RedisBus
from ordercast.dialects import opendining
from support.cluster import new_prefix, open_node
from support.pusher import NodeClient, need_node, start_live
from support.webhooks import wait_for


async def test_client_kill_pusher_subscriber_on_node_b_misses_nothing(
    pg_url: str, redis_url: str
) -> None:
    """The same gap for a pusher-js client on node B (``presence-r-…`` and three
    ``private-o-…`` channels): orders created, moved and cancelled on node A while B's bus
    connection is down reach it from storage, once each, in seq order."""
    need_node()
    prefix = new_prefix()
    a = await open_node(pg_url, redis_url, prefix)
    try:
        b = await open_node(pg_url, redis_url, prefix)
    except BaseException:
        await a.close()
        raise
    lives = start_live(b)
    try:
        live = await anext(lives)
        bus_b = b.bus
        assert isinstance(bus_b, RedisBus)
        transport = httpx.ASGITransport(app=create_app(a))
        async with httpx.AsyncClient(transport=transport, base_url="http://node-a") as http:

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                r = await http.post(path, auth=live.auth, json=body)
                assert r.status_code in (200, 201), r.text
                out: dict[str, Any] = r.json()
                return out

            spec = {
                "location_id": live.location_id,
                "items": [{"name": "Burger", "quantity": 1, "unit_price": 899}],
            }
            ids = [(await post("/v1/orders", spec))["id"] for _ in range(3)]
            channels = [f"presence-r-{live.location_id}"] + [f"private-o-{i}" for i in ids]
            auth = (
                f"{live.base_url}/api/v1/pusher/auth?key={live.app['key']}"
                f"&secret={live.app['secret']}"
            )
            staff = await NodeClient.start(
                "pusher_client.mjs",
                {
                    "key": live.app["key"],
                    "wsPort": live.ws_port,
                    "authEndpoint": auth,
                    "channels": channels,
                },
            )
            try:
                subscribed: set[str] = set()
                while subscribed != set(channels):
                    msg = await staff.next()
                    if msg["type"] == "subscribed":
                        subscribed.add(msg["channel"])
                for i in ids:
                    await post(f"/v1/orders/{i}/transitions", {"to": "accepted"})
                bus_b.min_backoff = 1.0
                admin = aioredis.from_url(redis_url)
                try:
                    [sub] = [
                        c
                        for c in await admin.client_list()
                        if c.get("name") == bus_b.client_name and int(c.get("sub", 0)) > 0
                    ]
                    await admin.client_kill_filter(_id=sub["id"])
                finally:
                    await admin.aclose()
                await wait_for(lambda: bus_b.down_reason is not None, 15, "node B to notice")
                new = [(await post("/v1/orders", spec))["id"] for _ in range(2)]
                for i in ids:
                    await post(f"/v1/orders/{i}/transitions", {"to": "preparing"})
                await post(f"/v1/orders/{ids[0]}/cancellation", {"reason": "gap"})
                await wait_for(lambda: bus_b.down_reason is None, 15, "node B to reconnect")
                await post(f"/v1/orders/{new[0]}/cancellation", {"reason": "after"})
                await post(f"/v1/orders/{ids[1]}/notes", {"text": "after"})
                view = await live.runtime.pusher.orders.location(live.location_id)
                want: dict[tuple[str, str], list[int]] = defaultdict(list)
                for oid in ids + new:
                    order = (await http.get(f"/v1/orders/{oid}", auth=live.auth)).json()
                    r = await http.get(f"/v1/orders/{oid}/events", auth=live.auth)
                    for event in r.json()["events"]:
                        if oid in ids and event["seq"] == 1:
                            continue  # created before the client subscribed
                        for out in opendining.render(event, order, view):
                            if out.channel in channels:
                                want[(out.channel, oid)].append(event["seq"])
                got: dict[tuple[str, str], list[int]] = defaultdict(list)
                total = sum(map(len, want.values()))
                with contextlib.suppress(TimeoutError):
                    while True:
                        msg = await staff.next(
                            within=5 if sum(map(len, got.values())) < total else 0.5
                        )
                        if msg.get("type") == "event":
                            data = msg["data"]
                            got[(msg["channel"], data["order_id"])].append(int(data["seq"]))
                assert dict(got) == dict(want)
                assert b.hub.catch_ups >= 1
            finally:
                await staff.close()
    finally:
        await lives.aclose()
        await b.close()
        await a.close()
