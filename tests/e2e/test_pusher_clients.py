"""The unmodified official Pusher clients against a live ordercast: pusher-js and laravel-echo
under Node, the Node ``pusher`` server SDK, pysher and the Python ``pusher`` SDK."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ordercast.runtime import Runtime
from support.pusher import Live, NodeClient, need_node, start_live


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


async def test_refused_auth_is_a_403_with_a_clear_message(
    live: Live, node_clients: list[NodeClient]
) -> None:
    order = await live.order(user_id="owner")
    other = await live.token("someone-else")
    oid = order["id"]
    # Directly: a customer asking for another customer's order, and for the restaurant channel.
    r = await live.http.post(
        "/api/v1/pusher/auth",
        params={"key": live.app["key"], "access_token": other},
        data={"socket_id": "1.2", "channel_name": f"private-o-{oid}"},
    )
    assert r.status_code == 403 and "not an order of this customer" in r.json()["error"]
    r = await live.http.get(
        "/api/v1/pusher/auth",
        params={
            "key": live.app["key"],
            "access_token": other,
            "socket_id": "1.2",
            "channel_name": f"presence-r-{live.location_id}",
        },
    )
    assert r.status_code == 403 and "restaurant" in r.json()["error"]
    r = await live.http.post(
        "/api/v1/pusher/auth",
        params={"key": live.app["key"], "secret": "wrong"},
        data={"socket_id": "1.2", "channel_name": f"private-o-{oid}"},
    )
    assert r.status_code == 403 and "secret" in r.json()["error"]
    r = await live.http.post(
        "/api/v1/pusher/auth",
        params={"key": live.app["key"], "secret": live.app["secret"]},
        data={"socket_id": "1.2", "channel_name": "private-anything"},
    )
    assert r.status_code == 403 and "private-o-" in r.json()["error"]
    # Through pusher-js: the subscription fails with the endpoint's status.
    c = await client(live, node_clients, od_auth(live, access_token=other), [f"private-o-{oid}"])
    err = await c.wait_for(type="subscription_error")
    assert err["status"] == 403


async def test_presence_join_leave_client_events_and_standard_auth(
    live: Live, node_clients: list[NodeClient]
) -> None:
    ch = f"presence-r-{live.location_id}"
    basic = (
        "Basic "
        + __import__("base64")
        .b64encode(f"{live.app['key']}:{live.app['secret']}".encode())
        .decode()
    )
    a = await client(
        live, node_clients, od_auth(live, secret=live.app["secret"], user_id="tablet-a"), [ch]
    )
    first = await a.wait_for(type="subscribed", channel=ch)
    assert first["members"] == 1 and first["me"] == "tablet-a"
    b = await client(
        live,
        node_clients,
        f"{live.base_url}/pusher/auth",
        [ch],
        authHeaders={"Authorization": basic},
    )
    second = await b.wait_for(type="subscribed", channel=ch)
    assert second["members"] == 2
    added = await a.wait_for(type="member_added")
    assert added["id"] == second["me"]

    b.send({"cmd": "client_event", "channel": ch, "event": "client-ping", "data": {"n": 1}})
    got = await a.wait_for(type="event", event="client-ping")
    assert got["data"] == {"n": 1}
    # never echoed to the sender: b sees a's event but not its own
    a.send({"cmd": "client_event", "channel": ch, "event": "client-pong", "data": {"n": 2}})
    got = await b.wait_for(type="event")
    assert got["event"] == "client-pong"

    await b.close()
    removed = await a.wait_for(type="member_removed")
    assert removed["id"] == second["me"]


async def test_laravel_echo_private_order_channel(
    live: Live, node_clients: list[NodeClient]
) -> None:
    token = await live.token("echo-user")
    order = await live.order(user_id="echo-user")
    oid = order["id"]
    c = await client(
        live,
        node_clients,
        od_auth(live, access_token=token),
        [f"private-o-{oid}"],
        echo=True,
        events=["order_confirmation", "order_tracker"],
    )
    await c.wait_for(type="subscribed", channel=f"private-o-{oid}")
    await live.post(f"/v1/orders/{oid}/confirmation", {"confirmation": 1})
    ev = await c.wait_for(type="event", event="order_confirmation")
    assert ev["data"]["confirmation"] == 1 and ev["data"]["seq"] == 2


async def test_node_server_sdk_triggers_and_queries(
    live: Live, node_clients: list[NodeClient]
) -> None:
    presence = f"presence-r-{live.location_id}"
    sub = await client(
        live,
        node_clients,
        f"{live.base_url}/pusher/auth",
        [presence],
        authHeaders={
            "Authorization": "Basic "
            + __import__("base64")
            .b64encode(f"{live.app['key']}:{live.app['secret']}".encode())
            .decode()
        },
    )
    await sub.wait_for(type="subscribed", channel=presence)
    pub = await client(live, node_clients, od_auth(live, secret=live.app["secret"]), ["cache-x"])
    await pub.wait_for(type="cache_miss", channel="cache-x")
    pub.send({"cmd": "subscribe", "channel": "public-news"})
    await pub.wait_for(type="subscribed", channel="public-news")

    sdk = await NodeClient.start(
        "pusher_server_sdk.mjs",
        {
            "appId": live.app["id"],
            "key": live.app["key"],
            "secret": live.app["secret"],
            "host": "127.0.0.1",
            "port": live.http_port,
            "channel": "public-news",
            "presence": presence,
        },
    )
    node_clients.append(sdk)
    result = await sdk.next(within=30)
    assert result["trigger"] == {"channels": {"public-news": {"subscription_count": 1}}}
    assert result["batch"] == {}
    assert set(result["channels"]["channels"]) >= {"public-news", "cache-x", presence}
    assert result["channel"] == {"occupied": True, "subscription_count": 1}
    assert len(result["users"]["users"]) == 1
    assert result["too_big"] == 413 and result["bad_secret"] == 401 and result["auth_ok"]
    ev = await pub.wait_for(type="event", event="from-node")
    assert ev["data"] == {"hello": "node"}
    assert (await pub.wait_for(type="event"))["event"] == "batch-1"
    assert (await pub.wait_for(type="event"))["event"] == "batch-2"


async def test_reconnect_gets_last_state_and_rest_catch_up(
    live: Live, node_clients: list[NodeClient]
) -> None:
    token = await live.token("cust-r")
    order = await live.order(user_id="cust-r")
    oid = order["id"]
    c = await client(live, node_clients, od_auth(live, access_token=token), [f"private-o-{oid}"])
    await c.wait_for(type="subscribed", channel=f"private-o-{oid}")
    await live.post(f"/v1/orders/{oid}/confirmation", {"confirmation": 1})
    seen = (await c.wait_for(type="event", event="order_confirmation"))["data"]["seq"]

    c.send({"cmd": "disconnect"})
    await c.wait_for(type="state", current="disconnected")
    await live.post(f"/v1/orders/{oid}/transitions", {"to": "preparing"})
    await live.post(f"/v1/orders/{oid}/transitions", {"to": "ready"})
    c.send({"cmd": "connect"})
    await c.wait_for(type="subscribed", channel=f"private-o-{oid}")
    # cache-channel style: the last event of the order channel arrives on subscribe
    last = await c.wait_for(type="event")
    assert last["event"] == "order_tracker" and last["data"]["seq"] == 4
    # and what was missed in between is in the REST event log, from the last seen seq
    r = await live.http.get(
        f"/v1/orders/{oid}/events",
        params={"after_seq": seen},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    events = body["events"] if isinstance(body, dict) else body
    assert [e["seq"] for e in events] == [3, 4]


async def test_pysher_and_the_python_sdk(live: Live) -> None:
    """pysher (protocol 6, signs private channels with the secret itself) receives an event
    triggered by pusher-http-python and an Open Dining event after a REST change; the SDK's
    channel queries, its unprefixed terminate_connections and its always-sent body_md5 work."""
    import threading

    import pusher as pusher_sdk
    import pysher

    order = await live.order()
    oid = order["id"]
    got: list[tuple[str, Any]] = []
    ready = threading.Event()
    received = threading.Event()

    client = pysher.Pusher(
        live.app["key"],
        secure=False,
        secret=live.app["secret"],
        custom_host="127.0.0.1",
        port=live.ws_port,
        log_level=40,
    )

    def on_connect(_data: str) -> None:
        channel = client.subscribe(f"private-o-{oid}")
        channel.bind("pusher_internal:subscription_succeeded", lambda _d: ready.set())
        for name in ("from-python", "order_confirmation"):
            channel.bind(name, lambda d, n=name: (got.append((n, json.loads(d))), received.set()))

    client.connection.bind("pusher:connection_established", on_connect)
    client.connect()
    try:
        assert await asyncio.to_thread(ready.wait, 15)
        sdk = pusher_sdk.Pusher(
            app_id="1",  # pusher-http-python insists on digits; any number aliases the key's app
            key=live.app["key"],
            secret=live.app["secret"],
            host="127.0.0.1",
            port=live.http_port,
            ssl=False,
        )
        result = await asyncio.to_thread(
            sdk.trigger, f"private-o-{oid}", "from-python", {"hello": "py"}
        )
        assert result == {}
        channels = await asyncio.to_thread(sdk.channels_info, "private-o-")
        assert f"private-o-{oid}" in channels["channels"]
        info = await asyncio.to_thread(sdk.channel_info, f"private-o-{oid}", ["subscription_count"])
        assert info == {"occupied": True, "subscription_count": 1}
        await asyncio.to_thread(sdk.terminate_user_connections, "nobody")
        await live.post(f"/v1/orders/{oid}/confirmation", {"confirmation": 1})
        for _ in range(100):
            if len(got) >= 2:
                break
            await asyncio.sleep(0.05)
        assert got[0] == ("from-python", {"hello": "py"})
        assert got[1][0] == "order_confirmation" and got[1][1]["confirmation"] == 1
    finally:
        await asyncio.to_thread(client.disconnect, 5)
        # pysher's timer thread is not a daemon: drop its queued pings so the run can exit.
        scheduler = client.connection.timeout_scheduler
        for entry in list(scheduler.queue):
            with contextlib.suppress(ValueError):
                scheduler.cancel(entry)


async def test_last_state_load_racing_a_live_event_never_duplicates_it(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subscribe-time last-state load reads storage while a change lands and reaches the
    socket live: the socket gets that event once, and the next one in order (found by CI:
    a faster write path let the load re-send the event the live path had just sent)."""
    import hashlib
    import hmac

    import websockets

    order = await live.order()
    oid = order["id"]
    channel = f"private-o-{oid}"
    orders = live.runtime.pusher.orders  # the Open Dining order channels
    orders.last_state.clear()  # no cached last state: the subscribe loads it from storage

    gate, loading = asyncio.Event(), asyncio.Event()
    real_get_order = orders.store.get_order

    async def gated_get_order(order_id: str) -> Any:
        monkeypatch.setattr(orders.store, "get_order", real_get_order)  # only this call
        loading.set()
        await gate.wait()
        return await real_get_order(order_id)

    monkeypatch.setattr(orders.store, "get_order", gated_get_order)
    url = f"ws://127.0.0.1:{live.ws_port}/app/{live.app['key']}?protocol=7"
    async with websockets.connect(url) as ws:

        async def frame() -> dict[str, Any]:
            msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return msg

        socket_id = json.loads((await frame())["data"])["socket_id"]
        sig = hmac.new(
            live.app["secret"].encode(), f"{socket_id}:{channel}".encode(), hashlib.sha256
        ).hexdigest()
        await ws.send(
            json.dumps(
                {
                    "event": "pusher:subscribe",
                    "data": {"channel": channel, "auth": f"{live.app['key']}:{sig}"},
                }
            )
        )
        assert (await frame())["event"] == "pusher_internal:subscription_succeeded"
        await asyncio.wait_for(loading.wait(), 10)  # the load is reading storage now
        await live.post(f"/v1/orders/{oid}/confirmation", {"confirmation": 1})
        first = await frame()  # from the live path
        assert first["event"] == "order_confirmation"
        assert json.loads(first["data"])["seq"] == 2
        gate.set()  # the load now reads the order with that event in it
        await asyncio.sleep(0.2)
        await live.post(f"/v1/orders/{oid}/transitions", {"to": "preparing"})
        second = await frame()
        assert second["event"] == "order_tracker", second
        assert json.loads(second["data"])["seq"] == 3
