"""The STOMP gateway end to end with a raw `websockets` client: frames in, frames out.

Orders change over REST (in-process ASGI client); the gateway receives them through the bus
and the hub exactly as under ``ordercast run``.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ordercast.gateway.stomp import StompConfig
from ordercast.protocols.stomp import SessionConfig
from support.stomp import raw_client, start_stomp, user_token
from support.world import World


async def test_user_token_connect_subscribe_and_order_changes(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-1")
    order = await world.order(user_id="u-1")
    async with raw_client(rt.gateway.url("/ws"), ["v12.stomp", "v11.stomp"]) as c:
        assert c.ws.subprotocol == "v12.stomp"
        connected = await c.connect(token, "")
        assert connected.command == "CONNECTED", connected
        assert connected.headers["version"] == "1.2"
        assert connected.headers["user-name"] == "u-1"
        receipt = await c.subscribe(f"/order-changes/u-1/{order['id']}")
        assert receipt.command == "RECEIPT" and receipt.headers["receipt-id"] == "r-sub-0"
        r = await world.move(order["id"], "accepted")
        assert r.status_code == 200, r.text
        msg = await c.expect("MESSAGE")
        assert msg.headers["subscription"] == "sub-0"
        assert msg.headers["destination"] == f"/order-changes/u-1/{order['id']}"
        assert msg.headers["content-type"] == "application/json"
        assert msg.headers["seq"] == "2"
        assert msg.headers["event-type"] == "order.accepted"
        body = json.loads(msg.body)
        assert body["id"] == order["id"] and body["status"] == "VERIFIED"
        await c.send("DISCONNECT", {"receipt": "bye"})
        bye = await c.expect("RECEIPT")
        assert bye.headers["receipt-id"] == "bye"
        assert await c.closed() == 1000


async def test_no_subprotocol_offered_none_echoed_and_websocket_path(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-1")
    async with raw_client(rt.gateway.url("/websocket")) as c:
        assert c.ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in c.ws.response.headers
        await c.send("STOMP", {"accept-version": "1.2", "login": token, "passcode": "null"})
        assert (await c.recv()).command == "CONNECTED"


async def test_kds_app_sees_venue_orders_from_appearance_to_close(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    kds = await world.new_app("kds")
    async with raw_client(rt.gateway.url("/ws")) as c:
        assert (await c.connect(kds["key"], kds["secret"])).command == "CONNECTED"
        dest = f"/kds/{world.tenant_id}/{world.location_id}"
        assert (await c.subscribe(dest)).command == "RECEIPT"
        order = await world.order()
        first = json.loads((await c.expect("MESSAGE")).body)
        assert first["id"] == order["id"] and first["completed"] and not first["closed"]
        await world.move(order["id"], "preparing")
        assert json.loads((await c.expect("MESSAGE")).body)["buckets"][0]["venue"] == (
            world.location_id
        )
        await world.move(order["id"], "completed", how="picked_up")
        last = await c.expect("MESSAGE")
        assert json.loads(last.body)["closed"] is True
        assert last.headers["event-type"] == "order.completed"


async def test_notifications_order_event_error(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-9")
    order = await world.order(user_id="u-9")
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.connect(token)
        assert (await c.subscribe(f"/kds/{world.tenant_id}/u-9", "a")).command == "RECEIPT"
        assert (
            await c.subscribe(f"/notifications/{world.tenant_id}/u-9", "b")
        ).command == "RECEIPT"
        r = await world.move(
            order["id"],
            "rejected",
            reason="out of buns",
            errors=[{"code": "STORE", "message": "closed"}],
        )
        assert r.status_code == 200, r.text
        got = {}
        for _ in range(2):
            m = await c.expect("MESSAGE")
            got[m.headers["subscription"]] = json.loads(m.body)
        assert got["a"] == got["b"]
        assert got["a"]["type"] == "OrderEventError"
        assert got["a"]["orderId"] == order["id"]
        assert got["a"]["codes"][0]["code"] == "STORE"


async def test_venue_settings_changes(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    kds = await world.new_app("kds")
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.connect(kds["key"], kds["secret"])
        assert (await c.subscribe(f"/venue/{world.tenant_id}/{world.location_id}")).command == (
            "RECEIPT"
        )
        r = await world.http.patch(
            f"/v1/locations/{world.location_id}",
            headers=world.admin,
            json={"settings": {"legacy_tracker": True}},
        )
        assert r.status_code == 200, r.text
        body = json.loads((await c.expect("MESSAGE")).body)
        assert body["type"] == "VenueSettingsChanged"
        assert body["settings"]["legacy_tracker"] is True


@pytest.mark.parametrize(
    "destination",
    [
        "/order-changes/u-1/{other_order}",  # another user's order
        "/order-changes/u-2/{other_order}",  # impersonating its owner
        "/kds/{tenant}/{location}",  # customers are not staff
        "/venue/{tenant}/{location}",
        "/notifications/{tenant}/u-2",
        "/topic/all",
    ],
)
async def test_refused_subscriptions(world: World, destination: str) -> None:
    rt = world.runtime
    await start_stomp(rt)
    other = await world.order(user_id="u-2")
    token = await user_token(rt, world.app, "u-1")
    dest = destination.format(
        other_order=other["id"], tenant=world.tenant_id, location=world.location_id
    )
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.connect(token)
        err = await c.subscribe(dest)
        assert err.command == "ERROR"
        assert err.headers["message"] == "forbidden"
        assert err.headers["receipt-id"] == "r-sub-0"
        assert err.headers["content-type"] == "text/plain"
        assert int(err.headers["content-length"]) == len(err.body)
        assert await c.closed() == 1008


async def test_app_of_another_venue_is_refused(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    r = await world.http.post(
        "/v1/locations",
        headers=world.admin,
        json={"tenant_id": world.tenant_id, "name": "Other", "timezone": "UTC"},
    )
    other_kds = await world.new_app("kds", [r.json()["id"]])
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.connect(other_kds["key"], other_kds["secret"])
        err = await c.subscribe(f"/kds/{world.tenant_id}/{world.location_id}")
        assert err.command == "ERROR"


@pytest.mark.parametrize(
    ("login", "passcode"),
    [("oct_garbage.sig", ""), ("nope", "wrong-secret"), ("", None)],
)
async def test_bad_logins(world: World, login: str, passcode: str | None) -> None:
    rt = world.runtime
    await start_stomp(rt)
    async with raw_client(rt.gateway.url("/ws")) as c:
        err = await c.connect(login, passcode)
        assert err.command == "ERROR"
        assert err.headers["message"] == "authentication failed"
        assert await c.closed() == 1008


async def test_failed_logins_are_rate_limited_per_address_and_credential(world: World) -> None:
    rt = world.runtime
    rt.directory.logins.max_failures = 3
    await start_stomp(rt)
    for _ in range(3):
        async with raw_client(rt.gateway.url("/ws")) as c:
            failed = await c.connect(world.app["key"], "wrong")
            assert failed.headers["message"] == "authentication failed"
    async with raw_client(rt.gateway.url("/ws")) as c:
        # Even the right secret is refused while this key is blocked from this address ...
        err = await c.connect(world.app["key"], world.app["secret"])
        assert err.headers["message"] == "too many failed logins"
    other = await world.new_app("kds")
    async with raw_client(rt.gateway.url("/ws")) as c:
        # ... but another app behind the same address logs in.
        ok = await c.connect(other["key"], other["secret"])
        assert ok.command == "CONNECTED", ok


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("SEND\ndestination:/kds/x/y\n\nhello\x00", "SEND is not supported"),
        ("FROB\n\n\x00", "unknown command"),
        ("SUBSCRIBE\nid:1\ndestination:/a\\tb\n\n\x00", "malformed frame"),
        ("BEGIN\ntransaction:t\n\n\x00", "transactions are not supported"),
    ],
)
async def test_bad_frames_after_connect(world: World, payload: str, message: str) -> None:
    rt = world.runtime
    await start_stomp(rt)
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.connect(world.app["key"], world.app["secret"])
        await c.ws.send(payload)
        err = await c.expect("ERROR")
        assert err.headers["message"] == message
        assert err.headers["content-type"] == "text/plain"
        assert int(err.headers["content-length"]) == len(err.body)
        assert await c.closed() in (1002, 1008)


async def test_frame_before_connect_and_oversize_frame(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.send("SUBSCRIBE", {"id": "1", "destination": "/x/y/z"})
        assert (await c.expect("ERROR")).headers["message"] == "expected a CONNECT frame"
        await c.closed()
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.connect(world.app["key"], world.app["secret"])
        await c.ws.send("SUBSCRIBE\nid:1\ndestination:/" + "x" * 70_000 + "\n\n\x00")
        assert (await c.expect("ERROR")).headers["message"] == "frame too large"
        assert await c.closed() == 1009


async def test_frames_split_across_and_packed_into_messages(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    kds = await world.new_app("kds")
    connect = f"CONNECT\naccept-version:1.2\nlogin:{kds['key']}\npasscode:{kds['secret']}\n\n\x00"
    dest = f"/kds/{world.tenant_id}/{world.location_id}"
    sub = f"SUBSCRIBE\nid:s1\ndestination:{dest}\nreceipt:r1\n\n\x00"
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.ws.send(connect[:10])
        await c.ws.send(connect[10:] + "\n" + sub[:5])
        await c.ws.send(sub[5:] + "\n\n")
        assert (await c.recv()).command == "CONNECTED"
        assert (await c.recv()).command == "RECEIPT"
        await world.order()
        assert (await c.expect("MESSAGE")).headers["subscription"] == "s1"


async def test_too_many_subscriptions(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt, StompConfig(session=SessionConfig(max_subscriptions=2)))
    kds = await world.new_app("kds")
    dest = f"/kds/{world.tenant_id}/{world.location_id}"
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.connect(kds["key"], kds["secret"])
        assert (await c.subscribe(dest, "1")).command == "RECEIPT"
        assert (await c.subscribe(dest, "2")).command == "RECEIPT"
        err = await c.subscribe(dest, "3")
        assert err.headers["message"] == "too many subscriptions"


async def test_unsubscribe_stops_delivery(world: World) -> None:
    rt = world.runtime
    gateway = await start_stomp(rt)
    kds = await world.new_app("kds")
    dest = f"/kds/{world.tenant_id}/{world.location_id}"
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.connect(kds["key"], kds["secret"])
        await c.subscribe(dest, "1")
        await c.send("UNSUBSCRIBE", {"id": "1", "receipt": "u"})
        assert (await c.expect("RECEIPT")).headers["receipt-id"] == "u"
        assert dest not in gateway.subscribers
        await world.order()
        await c.send("DISCONNECT", {"receipt": "d"})
        assert (await c.recv()).command == "RECEIPT"  # no MESSAGE came first


async def test_heart_beats_both_ways(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt, StompConfig(session=SessionConfig(heart_beat=(50, 50))))
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.send(
            "CONNECT",
            {
                "accept-version": "1.2",
                "login": world.app["key"],
                "passcode": world.app["secret"],
                "heart-beat": "50,50",
            },
        )
        connected = await c.expect("CONNECTED")
        assert connected.headers["heart-beat"] == "50,50"
        while c.heartbeats < 3:  # the server sends EOLs while the client keeps talking
            await c.ws.send("\n")
            with_timeout = asyncio.wait_for(c.ws.recv(), 10)
            if await with_timeout in ("\n", b"\n"):
                c.heartbeats += 1
        # Then the client goes silent: the server gives up on it.
        err = await c.expect("ERROR", wait=30)
        assert err.headers["message"] == "heart-beat timeout"


async def test_token_expiry_closes_the_session(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-1", ttl=1)
    async with raw_client(rt.gateway.url("/ws")) as c:
        assert (await c.connect(token)).command == "CONNECTED"
        err = await c.expect("ERROR", wait=30)
        assert err.headers["message"] == "access token expired"
        assert await c.closed() == 1008


async def test_expired_token_refused_at_connect(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-1", ttl=1)
    await asyncio.sleep(1.1)
    async with raw_client(rt.gateway.url("/ws")) as c:
        err = await c.connect(token)
        assert err.command == "ERROR"
        assert "expired" in err.text


async def test_resume_with_since_seq_replays_then_live_without_gaps(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-1")
    order = await world.order(user_id="u-1")
    for to in ("accepted", "preparing"):
        await world.move(order["id"], to)
    await world.http.post(
        f"/v1/orders/{order['id']}/notes", headers=world.auth, json={"text": "hi"}
    )
    dest = f"/order-changes/u-1/{order['id']}"
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.connect(token)
        await c.send("SUBSCRIBE", {"id": "s", "destination": dest, "x-since-seq": "1"})
        # Changes land while the backlog is being replayed.
        moves = asyncio.ensure_future(world.move(order["id"], "ready"))
        seqs = []
        while len(seqs) < 4:
            m = await c.expect("MESSAGE")
            seqs.append(int(m.headers["seq"]))
        await moves
        await world.move(order["id"], "completed", how="picked_up")
        seqs.append(int((await c.expect("MESSAGE")).headers["seq"]))
        assert seqs == [2, 3, 4, 5, 6]


async def test_since_seq_only_on_order_destinations(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    kds = await world.new_app("kds")
    async with raw_client(rt.gateway.url("/ws")) as c:
        await c.connect(kds["key"], kds["secret"])
        err = await c.subscribe(
            f"/kds/{world.tenant_id}/{world.location_id}", **{"x-since-seq": "3"}
        )
        assert err.command == "ERROR"
        assert err.headers["message"] == "x-since-seq not supported here"


async def test_slow_consumer_is_dropped_with_an_error(world: World) -> None:
    from ordercast.dialects.orderingstack import StompMessage

    rt = world.runtime
    gateway = await start_stomp(rt, StompConfig(max_buffered_bytes=64 * 1024, close_timeout=0.5))
    kds = await world.new_app("kds")
    dest = f"/kds/{world.tenant_id}/{world.location_id}"
    async with (
        raw_client(rt.gateway.url("/ws")) as fast,
        raw_client(rt.gateway.url("/ws"), max_queue=1) as slow,
    ):
        for c in (fast, slow):
            await c.connect(kds["key"], kds["secret"])
            await c.subscribe(dest)
        commands: list[str] = []
        receipt = asyncio.Event()

        async def drain() -> None:  # the fast client keeps reading
            while True:
                got = await fast.recv(wait=60)
                commands.append(got.command)
                if got.command == "RECEIPT":
                    receipt.set()

        reader = asyncio.ensure_future(drain())
        big = json.dumps({"pad": "x" * 60_000})
        sent = 0
        while gateway.dropped_slow == 0 and sent < 2_000:  # the slow client never reads
            gateway.publish(StompMessage(dest, f"m{sent}", big, ()))
            sent += 1
            await asyncio.sleep(0.001)
        assert gateway.dropped_slow == 1
        assert len(gateway.connections) == 1
        assert await slow.closed(wait=30) is not None
        await fast.send("DISCONNECT", {"receipt": "x"})
        await asyncio.wait_for(receipt.wait(), 30)
        reader.cancel()
        assert commands.count("MESSAGE") == sent  # the fast subscriber got everything
