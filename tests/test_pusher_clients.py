"""The unmodified official Pusher clients against a live ordercast: pusher-js and laravel-echo
under Node, the Node ``pusher`` server SDK, pysher and the Python ``pusher`` SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ordercast.runtime import Runtime
from pusher_support import Live, NodeClient, need_node, start_live


@pytest.fixture
async def live(runtime: Runtime) -> AsyncIterator[Live]:
    async for lv in start_live(runtime, {"tracker_labels": {"preparing": "Cooking"}}):
        yield lv


@pytest.fixture
async def node_clients() -> AsyncIterator[list[NodeClient]]:
    need_node()
    started: list[NodeClient] = []
    yield started
    for client in started:
        await client.close()


def od_auth(live: Live, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"key": live.app["key"], **params}.items())
    return f"{live.base_url}/api/v1/pusher/auth?{query}"


async def client(
    live: Live, started: list[NodeClient], auth_endpoint: str, channels: list[str], **extra: Any
) -> NodeClient:
    config = {
        "key": live.app["key"],
        "wsPort": live.ws_port,
        "authEndpoint": auth_endpoint,
        "channels": channels,
        **extra,
    }
    c = await NodeClient.start("pusher_client.mjs", config)
    started.append(c)
    return c


async def test_pusher_js_customer_and_staff_receive_every_open_dining_event(
    live: Live, node_clients: list[NodeClient]
) -> None:
    token = await live.token("cust-1")
    staff = await client(
        live,
        node_clients,
        od_auth(live, secret=live.app["secret"]),
        [f"presence-r-{live.location_id}"],
    )
    await staff.wait_for(type="subscribed", channel=f"presence-r-{live.location_id}")

    order = await live.order(user_id="cust-1")
    oid = order["id"]
    created = await staff.wait_for(type="event", event="new_order")
    assert created["data"]["order_id"] == oid and created["data"]["seq"] == 1

    cust = await client(live, node_clients, od_auth(live, access_token=token), [f"private-o-{oid}"])
    await cust.wait_for(type="subscribed", channel=f"private-o-{oid}")

    await live.post(f"/v1/orders/{oid}/confirmation", {"confirmation": 1})
    ev = await cust.wait_for(type="event", event="order_confirmation")
    assert ev["data"]["confirmation"] == 1 and ev["data"]["seq"] == 2

    burger = order["items"][0]["uuid"]
    await live.post(
        f"/v1/orders/{oid}/confirmation",
        {"confirmation": 2, "adjustment": {"time": 45, "items": [burger], "options": ["Bacon"]}},
    )
    ev = await cust.wait_for(type="event", event="order_confirmation")
    assert ev["data"]["confirmation"] == 2
    ev = await cust.wait_for(type="event", event="order_adjustment")
    assert ev["data"]["time"] == 45
    assert ev["data"]["items"] == [burger] and ev["data"]["options"] == ["Bacon"]

    await live.post(f"/v1/orders/{oid}/transitions", {"to": "preparing"})
    ev = await cust.wait_for(type="event", event="order_tracker")
    assert ev["data"]["status"] == "Cooking" and ev["data"]["time"]

    note = await live.post(
        f"/v1/orders/{oid}/notifications", {"type": "delivery_fee_changed", "message": "Fee $2"}
    )
    ev = await cust.wait_for(type="event", event="order_notification")
    assert ev["data"]["type"] == "delivery_fee_changed" and ev["data"]["message"] == "Fee $2"
    assert len(ev["data"]["notification_id"]) == 36
    assert note

    r = await live.http.post(f"/v1/orders/{oid}/deliveries", auth=live.auth, json={})
    delivery = r.json()["id"]
    ev = await cust.wait_for(type="event", event="order_tracker")
    assert ev["data"]["status"] == "delivery_created"
    await live.post(f"/v1/deliveries/{delivery}/status", {"status": "courier_ht_pickup"})
    ev = await cust.wait_for(type="event", event="order_tracker")
    assert ev["data"]["status"] == "courier_ht_pickup"

    await live.post(f"/v1/orders/{oid}/cancellation", {"reason": "closed early", "by": "venue"})
    ev = await cust.wait_for(type="event", event="order_cancellation")
    assert ev["data"]["order_id"] == oid
    ev = await staff.wait_for(type="event", event="order_cancellation")
    assert ev["data"]["order_id"] == oid and ev["data"]["reason"] == "closed early"
