"""The console's connections page answers for the cluster (two nodes in one process on one
PostgreSQL + Redis, their own key prefix): Pusher sockets on node A and node B are listed by
the console API on node A with their counts per node, the channels' cluster-wide subscription
counts and the presence members of both nodes; an app of another tenant sees none of it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from ordercast.app import create_app
from ordercast.protocols.pusher import sign_channel
from ordercast.runtime import Runtime
from support.cluster import two_nodes
from support.world import basic, bearer, make_channel_app


@pytest.fixture
async def nodes(pg_url: str, redis_url: str) -> AsyncIterator[tuple[Runtime, Runtime]]:
    async with two_nodes(
        pg_url,
        redis_url,
        gateways=True,
        secret_key="console-cluster-test-secret-key",
        cluster_heartbeat=0.2,
        cluster_node_timeout=5.0,
    ) as (a, b):
        yield a, b


async def _socket(
    rt: Runtime, key: str, secret: str, channels: list[str], user_id: str
) -> websockets.ClientConnection:
    """A Pusher socket on ``rt`` subscribed to ``channels`` (presence ones as ``user_id``)."""
    ws = await websockets.connect(f"{rt.gateway.url()}/app/{key}?protocol=7")
    hello = json.loads(await ws.recv())
    socket_id = json.loads(hello["data"])["socket_id"]
    for channel in channels:
        data: dict[str, Any] = {"channel": channel}
        if channel.startswith("presence-"):
            member = json.dumps({"user_id": user_id, "user_info": {"name": user_id}})
            data["channel_data"] = member
            data["auth"] = sign_channel(key, secret, socket_id, channel, member)
        else:
            data["auth"] = sign_channel(key, secret, socket_id, channel)
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["event"] != "pusher:error", msg
            if msg["event"] == "pusher_internal:subscription_succeeded":
                assert msg["channel"] == channel
                break
    return ws


def _pusher_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in body["apps"] if row["protocol"] == "pusher"]


async def test_the_console_on_one_node_lists_the_clusters_sockets(
    nodes: tuple[Runtime, Runtime],
) -> None:
    a, b = nodes
    node_a, node_b = a.pusher.cluster.node_id, b.pusher.cluster.node_id
    app = await make_channel_app(a, "staff")
    other = await make_channel_app(a, "other tenant")  # a tenant of its own
    order = await a.orders.create(
        app.principal,
        {
            "location_id": app.location_id,
            "type": "pickup",
            "items": [{"pos_id": "b", "name": "B", "quantity": 1, "unit_price": 100}],
            "consumer": {"name": "Ada"},
        },
    )
    presence = f"presence-r-{app.location_id}"
    private = f"private-o-{order.id}"
    other_presence = f"presence-r-{other.location_id}"
    sockets = [
        await _socket(a, app.key, app.secret, [presence], "ada"),
        await _socket(b, app.key, app.secret, [presence, private], "bob"),
        await _socket(b, other.key, other.secret, [other_presence], "eve"),
    ]
    transport = httpx.ASGITransport(app=create_app(a))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def console(headers: dict[str, str]) -> dict[str, Any]:
                r = await http.get("/dashboard/api/connections", headers=headers)
                assert r.status_code == 200, r.text
                return dict(r.json())

            # Node B's per-app counts reach node A with B's next beat (every 0.2 s).
            deadline = time.monotonic() + 10
            while True:
                everyone = _pusher_rows(await console(bearer(a.admin_token)))
                counts = sorted((r["app_id"], r["connections"]) for r in everyone)
                if counts == sorted([(app.app_id, 2), (other.app_id, 1)]):
                    break
                assert time.monotonic() < deadline, everyone
                await asyncio.sleep(0.1)
            rows = _pusher_rows(await console(basic(app.key, app.secret)))
            assert len(rows) == 1
            row = rows[0]
            assert row["app_id"] == app.app_id and row["app_name"] == "staff"
            assert row["node"] == "cluster"
            assert row["nodes"] == sorted(
                [{"node": node_a, "connections": 1}, {"node": node_b, "connections": 1}],
                key=lambda n: n["node"],
            )
            channels = {c["name"]: c for c in row["channels"]}
            assert sorted(channels) == sorted([presence, private])
            assert channels[presence]["subscribers"] == 2
            assert channels[private]["subscribers"] == 1  # only on node B
            assert channels[private]["members"] is None
            assert sorted(
                (m["user_id"], m["user_info"]) for m in channels[presence]["members"]
            ) == [("ada", {"name": "ada"}), ("bob", {"name": "bob"})]

            # The app of another tenant sees only its own socket (on node B), none of these.
            theirs = _pusher_rows(await console(basic(other.key, other.secret)))
            assert [(r["app_id"], r["connections"]) for r in theirs] == [(other.app_id, 1)]
            assert [c["name"] for c in theirs[0]["channels"]] == [other_presence]
            assert [m["user_id"] for m in theirs[0]["channels"][0]["members"]] == ["eve"]

            # The admin sees both apps (above), and can narrow to one.
            r = await http.get(
                "/dashboard/api/connections",
                params={"app_id": other.app_id},
                headers=bearer(a.admin_token),
            )
            assert [x["app_id"] for x in _pusher_rows(r.json())] == [other.app_id]

            # The timeline's socket counts are the serving node's fan-out, labelled with it:
            # the order's channel has its one socket on node B.
            await a.orders.note(app.principal, order.id, text="on the grill")
            transport_b = httpx.ASGITransport(app=create_app(b))
            async with httpx.AsyncClient(transport=transport_b, base_url="http://b") as http_b:

                async def live(client: httpx.AsyncClient) -> list[dict[str, Any]]:
                    r = await client.get(
                        f"/dashboard/api/orders/{order.id}/timeline",
                        headers=basic(app.key, app.secret),
                    )
                    assert r.status_code == 200, r.text
                    events = r.json()["events"]
                    assert [e["seq"] for e in events] == [1, 2]
                    return [x for x in events[1]["live"] if x["target"] == private]

                deadline = time.monotonic() + 10
                while not (on_b := await live(http_b)):
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
                assert on_b == [
                    {"protocol": "pusher", "target": private, "sockets": 1, "node": node_b}
                ]
            assert sum(x["sockets"] for x in await live(http)) == 0  # per node: none on A

            # Bob leaves node B: the console on node A follows.
            await sockets[1].close()
            deadline = time.monotonic() + 10
            while True:
                rows = _pusher_rows(await console(basic(app.key, app.secret)))
                chans = {c["name"]: c for c in rows[0]["channels"]} if rows else {}
                if (
                    rows
                    and rows[0]["connections"] == 1
                    and private not in chans
                    and len(chans.get(presence, {}).get("members") or []) == 1
                ):
                    break
                assert time.monotonic() < deadline, rows
                await asyncio.sleep(0.1)
            assert rows[0]["nodes"] == [{"node": node_a, "connections": 1}]
            assert chans[presence]["subscribers"] == 1
            assert chans[presence]["members"][0]["user_id"] == "ada"
    finally:
        for ws in sockets:
            await ws.close()
