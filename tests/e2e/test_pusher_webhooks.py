"""Pusher server webhooks end to end: real Pusher clients (pusher-js under Node, pysher) on a
live ordercast, a real aiohttp receiver on loopback, the delivery engine in between, and
every request checked with the official SDKs' own validators (Python ``pusher``
``validate_webhook``; Node ``pusher`` ``WebHook.isValid`` where Node is installed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pusher as pusher_sdk
import pytest

from ordercast.delivery.pusher_webhooks import PusherWebhooks
from ordercast.domain.access import Admin
from ordercast.runtime import Runtime
from support.pusher import NODE_DIR, Live, NodeClient, need_node, start_live
from support.webhooks import Receiver, fresh_database_url, open_runtime, wait_for
from support.world import make_channel_app

VACATE_DELAY = 0.3  # shorter than the default 1 s, to keep the tests quick


@pytest.fixture(params=["sqlite", "postgresql"])
async def rt(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    async for url in fresh_database_url(request.param, tmp_path):
        async for runtime in open_runtime(url):
            assert runtime.pusher_webhooks is not None
            runtime.pusher_webhooks.vacate_delay = VACATE_DELAY
            yield runtime


@pytest.fixture
async def live(rt: Runtime) -> AsyncIterator[Live]:
    async for lv in start_live(rt):
        await rt.start_delivery()
        yield lv


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def node_clients() -> AsyncIterator[list[NodeClient]]:
    need_node()
    started: list[NodeClient] = []
    yield started
    for client in started:
        await client.close()


async def register(live: Live, url: str, **extra: Any) -> dict[str, Any]:
    r = await live.http.post(
        f"/v1/apps/{live.app['id']}/endpoints",
        auth=live.auth,
        json={"url": url, "dialect": "pusher", **extra},
    )
    assert r.status_code == 201, r.text
    endpoint: dict[str, Any] = r.json()
    return endpoint


def validated(live: Live, receiver: Receiver) -> list[dict[str, Any]]:
    """Every request received, checked with pusher-http-python's validate_webhook; their
    events in order of arrival."""
    sdk = pusher_sdk.Pusher(app_id="1", key=live.app["key"], secret=live.app["secret"])
    events: list[dict[str, Any]] = []
    for item in receiver.received:
        assert item.headers["content-type"] == "application/json"
        body = sdk.validate_webhook(
            item.headers["x-pusher-key"], item.headers["x-pusher-signature"], item.body
        )
        assert body is not None, f"pusher SDK refused {item.body!r}"
        assert 1 <= len(body["events"]) <= 20
        events.extend(body["events"])
    return events


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in events]


async def node_validate(live: Live, receiver: Receiver) -> list[dict[str, Any]]:
    """The same requests through the Node SDK's WebHook (exact content-type, key, HMAC)."""
    requests = [{"headers": r.headers, "body": r.body.decode()} for r in receiver.received]
    config = {"appId": "1", "key": live.app["key"], "secret": live.app["secret"]}
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / "validate_webhooks.mjs"),
        json.dumps(config),
        cwd=str(NODE_DIR),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(requests).encode()), 30)
    assert proc.returncode == 0, err.decode()
    results: list[dict[str, Any]] = json.loads(out)
    return results


async def test_pusher_js_presence_client_events_and_vacate(
    live: Live, receiver: Receiver, node_clients: list[NodeClient]
) -> None:
    endpoint = await register(live, receiver.url)
    ch = f"presence-r-{live.location_id}"
    auth = f"{live.base_url}/api/v1/pusher/auth?key={live.app['key']}&secret={live.app['secret']}"
    config = {"key": live.app["key"], "wsPort": live.ws_port, "channels": [ch]}

    a = await NodeClient.start("pusher_client.mjs", {**config, "authEndpoint": auth + "&user_id=a"})
    node_clients.append(a)
    await a.wait_for(type="subscribed", channel=ch)
    await wait_for(lambda: len(validated(live, receiver)) >= 2, what="occupied + member_added")
    assert validated(live, receiver) == [
        {"name": "channel_occupied", "channel": ch},
        {"name": "member_added", "channel": ch, "user_id": "a"},
    ]

    b = await NodeClient.start("pusher_client.mjs", {**config, "authEndpoint": auth + "&user_id=b"})
    node_clients.append(b)
    b_socket = (await b.wait_for(type="connected"))["socket_id"]
    await b.wait_for(type="subscribed", channel=ch)
    b.send({"cmd": "client_event", "channel": ch, "event": "client-typing", "data": {"n": 1}})
    await a.wait_for(type="event", event="client-typing")
    await wait_for(lambda: len(validated(live, receiver)) >= 4, what="member b + client event")
    added_b, client_event = validated(live, receiver)[2:4]
    assert added_b == {"name": "member_added", "channel": ch, "user_id": "b"}
    assert client_event["name"] == "client_event"
    assert client_event["channel"] == ch and client_event["event"] == "client-typing"
    assert json.loads(client_event["data"]) == {"n": 1}  # a JSON string, as Pusher sends it
    assert client_event["socket_id"] == b_socket and client_event["user_id"] == "b"

    await b.close()  # b's socket goes away: member_removed after the debounce
    await a.wait_for(type="member_removed")
    await wait_for(lambda: len(validated(live, receiver)) >= 5, what="member_removed b")
    assert validated(live, receiver)[4] == {"name": "member_removed", "channel": ch, "user_id": "b"}

    a.send({"cmd": "disconnect"})
    await wait_for(lambda: len(validated(live, receiver)) >= 7, what="a leaves, channel vacated")
    assert validated(live, receiver)[5:] == [
        {"name": "member_removed", "channel": ch, "user_id": "a"},
        {"name": "channel_vacated", "channel": ch},
    ]
    # Standard Webhooks headers ride along (webhook-id for dedupe), signed with the endpoint
    # secret; and the Node SDK's own validator accepts every request too.
    receiver.verify_all(endpoint["secret"])
    for result in await node_validate(live, receiver):
        assert result["valid"] is True
    # The outbox kept them: attempts log and messages, not tied to any order.
    r = await live.http.get(
        f"/v1/apps/{live.app['id']}/endpoints/{endpoint['id']}/messages", auth=live.auth
    )
    messages = r.json()["messages"]
    assert messages and all(m["order_id"] is None and m["seq"] is None for m in messages)
    assert all(m["status"] == "delivered" for m in messages)


async def test_quick_reconnect_sends_neither_vacated_nor_occupied(
    live: Live, receiver: Receiver, node_clients: list[NodeClient]
) -> None:
    await register(live, receiver.url, event_types=["channel_occupied", "channel_vacated"])
    config = {"key": live.app["key"], "wsPort": live.ws_port, "authEndpoint": "", "channels": []}
    c = await NodeClient.start("pusher_client.mjs", {**config, "channels": ["lobby"]})
    node_clients.append(c)
    await c.wait_for(type="subscribed", channel="lobby")
    await wait_for(lambda: len(validated(live, receiver)) >= 1, what="channel_occupied")
    c.send({"cmd": "unsubscribe", "channel": "lobby"})
    c.send({"cmd": "subscribe", "channel": "lobby"})  # back within the debounce window
    await c.wait_for(type="subscribed", channel="lobby")
    await asyncio.sleep(VACATE_DELAY + 0.4)
    assert validated(live, receiver) == [{"name": "channel_occupied", "channel": "lobby"}]
    c.send({"cmd": "unsubscribe", "channel": "lobby"})
    await wait_for(lambda: len(validated(live, receiver)) >= 2, what="channel_vacated")
    assert names(validated(live, receiver)) == ["channel_occupied", "channel_vacated"]


async def test_pysher_receiver_down_then_up(live: Live) -> None:
    """pysher joins a public channel while the receiver is down: the webhook waits in the
    outbox, failed attempts are logged, and it is delivered once the receiver is up."""
    import pysher

    receiver = Receiver()  # not started yet: connection refused
    endpoint = await register(live, receiver.url)
    base = f"/v1/apps/{live.app['id']}/endpoints/{endpoint['id']}"
    ready = threading.Event()
    client = pysher.Pusher(
        live.app["key"], secure=False, custom_host="127.0.0.1", port=live.ws_port, log_level=40
    )

    def on_connect(_data: str) -> None:
        channel = client.subscribe("kitchen-lobby")
        channel.bind("pusher_internal:subscription_succeeded", lambda _d: ready.set())

    client.connection.bind("pusher:connection_established", on_connect)
    client.connect()
    try:
        assert await asyncio.to_thread(ready.wait, 15)

        async def failed_twice() -> bool:
            r = await live.http.get(f"{base}/attempts", auth=live.auth)
            return sum(a["outcome"] == "failed" for a in r.json()["attempts"]) >= 2

        await wait_for(failed_twice, what="two failed attempts")
        pending = (await live.http.get(f"{base}/messages", auth=live.auth)).json()["messages"]
        assert [m["status"] for m in pending] == ["pending"]
        assert json.loads(pending[0]["payload"])["events"] == [
            {"name": "channel_occupied", "channel": "kitchen-lobby"}
        ]
        await receiver.start()
        await wait_for(lambda: len(receiver.received) >= 1, what="delivery after the outage")
        assert validated(live, receiver) == [
            {"name": "channel_occupied", "channel": "kitchen-lobby"}
        ]
        # Same message, same webhook-id: the body is the one written before the outage.
        assert receiver.received[0].webhook_id == pending[0]["id"]
        await asyncio.to_thread(client.disconnect, 5)
        await wait_for(lambda: len(receiver.received) >= 2, what="channel_vacated")
        assert names(validated(live, receiver)) == ["channel_occupied", "channel_vacated"]
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(client.disconnect, 5)
        scheduler = client.connection.timeout_scheduler
        for entry in list(scheduler.queue):
            with contextlib.suppress(ValueError):
                scheduler.cancel(entry)
        await receiver.stop()


# -- the sink alone: batching, debounce, filters, disabled endpoints -----------------------


async def test_sink_batches_debounces_and_filters(rt: Runtime) -> None:
    tenant = await rt.directory.create_tenant("T")
    created = await rt.directory.create_app(
        tenant_id=tenant.id, name="A", kind="channel", location_ids=[]
    )
    app = created.app
    assert rt.webhooks is not None
    every, _ = await rt.webhooks.create_endpoint(
        Admin(), app.id, url="http://127.0.0.1:9/all", dialect="pusher"
    )
    members, _ = await rt.webhooks.create_endpoint(
        Admin(),
        app.id,
        url="http://127.0.0.1:9/members",
        dialect="pusher",
        event_types=["member_*"],
        enabled=False,
    )
    sink = PusherWebhooks(rt.webhooks.outbox, window=0.05, vacate_delay=0.2)
    woken: list[int] = []
    sink.on_enqueue.append(woken.append)

    # 45 occupied channels arrive together: bodies of at most 20 events.
    await sink(app, [{"name": "channel_occupied", "channel": f"c{i}"} for i in range(45)])
    # Leaving and coming back within the delay: neither is sent.
    await sink(app, [{"name": "member_removed", "channel": "presence-x", "user_id": "u"}])
    await sink(app, [{"name": "member_added", "channel": "presence-x", "user_id": "u"}])
    await sink(app, [{"name": "channel_vacated", "channel": "c44"}])
    await sink(app, [{"name": "channel_occupied", "channel": "c44"}])
    # A real departure is sent after the delay.
    await sink(app, [{"name": "member_removed", "channel": "presence-x", "user_id": "v"}])
    await asyncio.sleep(0.5)
    await sink.close()

    outbox = rt.webhooks.outbox
    msgs = list(
        reversed(await outbox.list_messages(every["id"], status=None, order_id=None, limit=50))
    )
    bodies = [json.loads(m["body"]) for m in msgs]
    assert [len(b["events"]) for b in bodies] == [20, 20, 5, 1]
    assert [e["channel"] for b in bodies[:3] for e in b["events"]] == [f"c{i}" for i in range(45)]
    assert bodies[3]["events"] == [
        {"name": "member_removed", "channel": "presence-x", "user_id": "v"}
    ]
    assert all(m["status"] == "pending" and m["order_id"] is None for m in msgs)
    assert msgs[0]["wire_type"] == "channel_occupied"
    # The filtered, disabled endpoint keeps only member events, marked skipped.
    skipped = await outbox.list_messages(members["id"], status=None, order_id=None, limit=50)
    assert [json.loads(m["body"])["events"][0]["name"] for m in skipped] == ["member_removed"]
    assert skipped[0]["status"] == "skipped"
    assert sum(woken) == 5


async def test_order_events_do_not_go_to_pusher_endpoints(rt: Runtime) -> None:
    """A pusher endpoint is about channels: order changes of its app produce no message."""
    channel = await make_channel_app(rt, name="A")
    assert rt.webhooks is not None
    ep, _ = await rt.webhooks.create_endpoint(
        Admin(), channel.app_id, url="http://127.0.0.1:9/hooks", dialect="pusher"
    )
    import httpx

    from ordercast.app import create_app
    from support.world import basic

    transport = httpx.ASGITransport(app=create_app(rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        r = await http.post(
            "/v1/orders",
            headers=basic(channel.key, channel.secret),
            json={
                "location_id": channel.location_id,
                "type": "pickup",
                "items": [{"pos_id": "x", "name": "X", "quantity": 1, "unit_price": 100}],
            },
        )
        assert r.status_code == 201, r.text
    assert await rt.webhooks.outbox.count_messages(ep["id"]) == {}
