"""Destinations and channels that carry several orders: every subscriber gets every message
of every order, once, in seq order, when the orders move interleaved.

Issue 11: a STOMP subscription kept ONE last seq for all the orders of its destination, so a
KDS on ``/kds/{tenant}/{venue}`` saw 4 of 16 messages when four orders moved at once. These
tests drive several orders concurrently over REST and assert, per subscriber and per order,
on the (order-id, seq) pairs the real clients received against the event log read back over
REST.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable
from typing import Any

from ordercast.dialects import opendining
from ordercast.runtime import Runtime
from support.pusher import NodeClient, need_node, start_live
from support.stomp import RawClient, raw_client, start_stomp, user_token
from support.world import World

ORDERS = 4
USER = "u-multi"


async def _interleave(world: World, ids: list[str]) -> None:
    """Move every order through the kitchen, all orders concurrently at each step, with a
    note and a notification (user-facing) between the steps."""
    for step in ("accepted", "preparing", "ready"):
        rs = await asyncio.gather(*(world.move(i, step) for i in ids))
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
        rs = await asyncio.gather(
            *(
                world.http.post(
                    f"/v1/orders/{i}/notes", headers=world.auth, json={"text": f"{step} {i}"}
                )
                for i in ids
            )
        )
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
    rs = await asyncio.gather(
        *(
            world.http.post(
                f"/v1/orders/{i}/notifications",
                headers=world.auth,
                json={"type": "info", "message": f"bye {i}"},
            )
            for i in ids
        )
    )
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
    rs = await asyncio.gather(*(world.move(i, "completed", how="picked_up") for i in ids))
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]


async def _log(world: World, order_id: str) -> list[dict[str, Any]]:
    r = await world.http.get(f"/v1/orders/{order_id}/events", headers=world.auth)
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


async def _collect(client: RawClient, count: int) -> dict[str, dict[str, list[int]]]:
    """Up to ``count`` MESSAGE frames (fewer when nothing more comes for 3 s): subscription
    -> order id -> seqs in arrival order."""
    got: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for _ in range(count):
        try:
            m = await client.expect("MESSAGE", wait=3)
        except TimeoutError:
            break
        got[m.headers["subscription"]][m.headers["order-id"]].append(int(m.headers["seq"]))
    return got


async def _quiet(client: RawClient) -> None:
    """Nothing more arrives (no duplicates after the expected messages)."""
    try:
        extra = await client.recv(wait=0.3)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected frame {extra.command} {extra.headers}")


async def test_stomp_every_multi_order_destination_gets_every_order_seq(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    kds = await world.new_app("kds")
    token = await user_token(rt, world.app, USER)
    t, v = world.tenant_id, world.location_id
    async with (
        raw_client(rt.gateway.url("/ws"), max_queue=256) as staff,
        raw_client(rt.gateway.url("/ws"), max_queue=256) as user,
    ):
        assert (await staff.connect(kds["key"], kds["secret"])).command == "CONNECTED"
        # ack:auto (the fast path) and client-individual (the per-connection path).
        assert (await staff.subscribe(f"/kds/{t}/{v}", "kds-auto")).command == "RECEIPT"
        assert (
            await staff.subscribe(f"/kds/{t}/{v}", "kds-ack", ack="client-individual")
        ).command == "RECEIPT"
        assert (await user.connect(token)).command == "CONNECTED"
        for dest, sub in (
            (f"/order-changes/{t}/{USER}", "mine"),
            (f"/kds/{t}/{USER}", "kds-user"),
            (f"/notifications/{t}/{USER}", "notes"),
        ):
            assert (await user.subscribe(dest, sub)).command == "RECEIPT"

        orders = await asyncio.gather(*(world.order(user_id=USER) for _ in range(ORDERS)))
        ids = [o["id"] for o in orders]
        await _interleave(world, ids)

        logs = {i: await _log(world, i) for i in ids}
        every = {i: [e["seq"] for e in log] for i, log in logs.items()}
        user_facing = {
            i: [
                e["seq"]
                for e in log
                if e["type"] in ("order.note", "order.notification", "order.rejected")
            ]
            for i, log in logs.items()
        }
        assert all(len(s) == 9 for s in every.values()), every  # created + 3 x (move, note) + 2
        assert all(len(s) == 4 for s in user_facing.values()), user_facing

        staff_got = await _collect(staff, 2 * sum(len(s) for s in every.values()))
        user_got = await _collect(
            user,
            sum(len(s) for s in every.values()) + 2 * sum(len(s) for s in user_facing.values()),
        )
        await _quiet(staff)
        await _quiet(user)

    for sub in ("kds-auto", "kds-ack"):
        assert dict(staff_got[sub]) == every, sub
    assert dict(user_got["mine"]) == every
    assert dict(user_got["kds-user"]) == user_facing
    assert dict(user_got["notes"]) == user_facing


async def test_pusher_presence_and_order_channels_get_every_order_event(runtime: Runtime) -> None:
    """``presence-r-{location}`` carries every order of the location, and one pusher-js
    client subscribes to the four orders' ``private-o-`` channels at once: per order every
    event arrives once, in seq order, with the orders moving interleaved (real pusher-js)."""
    need_node()
    async for live in start_live(runtime):
        orders = [await live.order(user_id=USER) for _ in range(ORDERS)]
        ids = [o["id"] for o in orders]
        staff_auth = (
            f"{live.base_url}/api/v1/pusher/auth?key={live.app['key']}&secret={live.app['secret']}"
        )
        presence = f"presence-r-{live.location_id}"
        channels = [presence] + [f"private-o-{i}" for i in ids]
        staff = await NodeClient.start(
            "pusher_client.mjs",
            {
                "key": live.app["key"],
                "wsPort": live.ws_port,
                "authEndpoint": staff_auth,
                "channels": channels,
            },
        )
        try:
            subscribed: set[str] = set()
            while subscribed != set(channels):
                msg = await staff.next()
                assert msg["type"] in ("state", "connected", "subscribed"), msg
                if msg["type"] == "subscribed":
                    subscribed.add(msg["channel"])
            more = await asyncio.gather(*(live.order(user_id=USER) for _ in range(ORDERS)))
            new_ids = [o["id"] for o in more]
            for step in ("accepted", "preparing", "ready"):
                await asyncio.gather(
                    *(live.post(f"/v1/orders/{i}/transitions", {"to": step}) for i in ids),
                    *(live.post(f"/v1/orders/{i}/notes", {"text": f"{step} {i}"}) for i in ids),
                )
            await asyncio.gather(
                *(live.post(f"/v1/orders/{i}/cancellation", {"reason": "x"}) for i in new_ids),
                *(live.post(f"/v1/orders/{i}/cancellation", {"reason": "y"}) for i in ids),
            )
            expected: dict[tuple[str, str], list[int]] = defaultdict(list)
            view = await runtime.pusher.orders.location(live.location_id)
            for oid in ids + new_ids:
                r = await live.http.get(f"/v1/orders/{oid}", auth=live.auth)
                order = r.json()
                r = await live.http.get(f"/v1/orders/{oid}/events", auth=live.auth)
                for event in r.json()["events"]:
                    if oid in ids and event["seq"] == 1:
                        continue  # created before the client subscribed
                    for out in opendining.render(event, order, view):
                        if out.channel in channels:
                            expected[(out.channel, oid)].append(event["seq"])
            got: dict[tuple[str, str], list[int]] = defaultdict(list)
            want = sum(len(v) for v in expected.values())
            quiet = 0.5
            with contextlib.suppress(TimeoutError):
                # Until nothing more comes: every expected event, and no extra one.
                while True:
                    msg = await staff.next(
                        within=3 if sum(map(len, got.values())) < want else quiet
                    )
                    if msg.get("type") == "event":
                        data = msg["data"]
                        got[(msg["channel"], data["order_id"])].append(int(data["seq"]))
            assert dict(got) == dict(expected)
        finally:
            await staff.close()


class _Gate:
    """A hub consumer ahead of the gateways that holds every bus message until opened: the
    events are committed, their bus messages on the way, as on a busy node."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()

    def on_message(self, message: object) -> Awaitable[bool] | None:
        return None if self.opened.is_set() else self.opened.wait()

    def on_lagged(self) -> None:
        return None


async def test_pusher_last_state_load_loses_nothing_on_other_channels(runtime: Runtime) -> None:
    """A customer subscribes to ``private-o-{order}`` while the order's first events are
    committed but their bus messages not yet delivered: the customer gets the order's last
    state once (not again live), the staff tablet on ``presence-r-…`` still gets
    ``new_order``. Before the fix the last-state load marked the order's events as sent for
    the whole gateway, and ``new_order`` never reached the tablet."""
    need_node()
    async for live in start_live(runtime):
        gate = _Gate()
        runtime.hub.consumers.insert(0, gate)
        staff_auth = (
            f"{live.base_url}/api/v1/pusher/auth?key={live.app['key']}&secret={live.app['secret']}"
        )
        presence = f"presence-r-{live.location_id}"
        config = {"key": live.app["key"], "wsPort": live.ws_port, "authEndpoint": staff_auth}
        staff = await NodeClient.start("pusher_client.mjs", {**config, "channels": [presence]})
        cust = None
        try:
            await staff.wait_for(type="subscribed", channel=presence)
            order = await live.order(user_id=USER)
            oid = order["id"]
            await live.post(f"/v1/orders/{oid}/transitions", {"to": "accepted"})
            await live.post(f"/v1/orders/{oid}/notes", {"text": "on it"})
            cust = await NodeClient.start(
                "pusher_client.mjs", {**config, "channels": [f"private-o-{oid}"]}
            )
            first = await cust.wait_for(type="event")
            assert (first["event"], first["data"]["seq"]) == ("order_tracker", 3)
            gate.opened.set()
            created = await staff.wait_for(type="event", within=5)
            assert (created["event"], created["data"]["order_id"], created["data"]["seq"]) == (
                "new_order",
                oid,
                1,
            )
            await live.post(f"/v1/orders/{oid}/transitions", {"to": "rejected"})
            nxt = await cust.wait_for(type="event")
            assert (nxt["event"], nxt["data"]["seq"]) == ("order_confirmation", 4)
        finally:
            await staff.close()
            if cust is not None:
                await cust.close()


async def test_stomp_snapshot_then_live_without_gap_or_duplicate(world: World) -> None:
    """``x-snapshot: true`` on ``/kds/{tenant}/{venue}``: a display that restarts mid-service
    first gets every open order of the venue (the message of its latest event, marked
    ``x-snapshot: true``), then live, with orders moving WHILE it subscribes: per order the
    seqs received are the log's tail from the snapshot on, each once, in order; a closed
    order is not on the board. ``/order-changes/{tenant}/{user}`` and ``/venue/…`` too; a
    notification stream refuses it."""
    rt = world.runtime
    await start_stomp(rt)
    kds = await world.new_app("kds")
    token = await user_token(rt, world.app, USER)
    t, v = world.tenant_id, world.location_id
    ids = [o["id"] for o in await asyncio.gather(*(world.order(user_id=USER) for _ in range(4)))]
    closed = ids.pop()
    assert (await world.move(closed, "completed", how="picked_up")).status_code == 200
    await world.move(ids[0], "accepted")
    await world.move(ids[1], "preparing")
    async with (
        raw_client(rt.gateway.url("/ws"), max_queue=256) as staff,
        raw_client(rt.gateway.url("/ws"), max_queue=256) as user,
    ):
        assert (await staff.connect(kds["key"], kds["secret"])).command == "CONNECTED"
        assert (await user.connect(token)).command == "CONNECTED"

        async def subscribe() -> None:
            await staff.send(
                "SUBSCRIBE",
                {"id": "board", "destination": f"/kds/{t}/{v}", "x-snapshot": "true"},
            )
            await staff.send(
                "SUBSCRIBE",
                {"id": "venue", "destination": f"/venue/{t}/{v}", "x-snapshot": "true"},
            )
            await user.send(
                "SUBSCRIBE",
                {"id": "mine", "destination": f"/order-changes/{t}/{USER}", "x-snapshot": "true"},
            )

        async def busy() -> list[str]:
            new = [(await world.order(user_id=USER))["id"]]
            for step in ("ready", "handed_off"):
                await asyncio.gather(*(world.move(i, step) for i in ids))
            return new

        _, new = await asyncio.gather(subscribe(), busy())
        ids += new
        logs = {i: await _log(world, i) for i in [*ids, closed]}
        last = {i: log[-1]["seq"] for i, log in logs.items()}

        async def board(client: RawClient) -> dict[str, dict[str, list[tuple[int, bool]]]]:
            got: dict[str, dict[str, list[tuple[int, bool]]]] = defaultdict(
                lambda: defaultdict(list)
            )
            with contextlib.suppress(TimeoutError):
                while True:
                    m = await client.recv(wait=1.5)
                    if m.command != "MESSAGE":
                        continue
                    key = m.headers.get("order-id", "venue")
                    got[m.headers["subscription"]][key].append(
                        (int(m.headers.get("seq", 0)), m.headers.get("x-snapshot") == "true")
                    )
            return got

        staff_got = await board(staff)
        user_got = await board(user)

    for sub, got in (("board", staff_got["board"]), ("mine", user_got["mine"])):
        assert closed not in got, sub
        assert set(got) == set(ids), sub
        for i in ids:
            seqs = [s for s, _ in got[i]]
            first = seqs[0]
            assert seqs == list(range(first, last[i] + 1)), (sub, i, got[i])
            # Orders there before the subscription start with the snapshot message.
            if i not in new:
                assert got[i][0][1] is True, (sub, i, got[i])
            assert all(not snap for _, snap in got[i][1:]), (sub, i, got[i])
    assert staff_got["venue"]["venue"] == [(0, True)]

    async with raw_client(rt.gateway.url("/ws")) as again:
        await again.connect(token)
        err = await again.subscribe(f"/notifications/{t}/{USER}", **{"x-snapshot": "true"})
        assert err.command == "ERROR" and err.headers["message"] == "x-snapshot not supported here"


async def test_gateway_maps_are_empty_after_subscribers_leave(runtime: Runtime) -> None:
    """Real clients on every kind of channel and destination, then they leave and more
    orders are published: no per-order or per-channel entry is left in either gateway
    (before: the Pusher gateway's sent_seq kept one entry per order ever published), the
    caches stay within their bounds."""
    from ordercast.gateway.pusher import orders as pusher_orders
    from ordercast.gateway.stomp import StompGateway

    need_node()
    async for live in start_live(runtime):
        stomp = await start_stomp(runtime)
        registry, orders = runtime.pusher.channels, runtime.pusher.orders
        world_kds = await runtime.directory.create_app(
            tenant_id=live.tenant_id, name="KDS", kind="kds", location_ids=[live.location_id]
        )
        ids = [(await live.order(user_id=USER))["id"] for _ in range(3)]
        staff_auth = (
            f"{live.base_url}/api/v1/pusher/auth?key={live.app['key']}&secret={live.app['secret']}"
        )
        channels = [f"presence-r-{live.location_id}"] + [f"private-o-{i}" for i in ids]
        staff = await NodeClient.start(
            "pusher_client.mjs",
            {
                "key": live.app["key"],
                "wsPort": live.ws_port,
                "authEndpoint": staff_auth,
                "channels": channels,
            },
        )
        try:
            for _ in channels:
                await staff.wait_for(type="subscribed")
            async with raw_client(runtime.gateway.url("/ws")) as kds:
                await kds.connect(world_kds.app.key, world_kds.secret)
                assert (
                    await kds.subscribe(f"/kds/{live.tenant_id}/{live.location_id}")
                ).command == ("RECEIPT")
                for i in ids:
                    await live.post(f"/v1/orders/{i}/transitions", {"to": "accepted"})
                for _ in ids:
                    assert (await kds.expect("MESSAGE")).headers["event-type"] == "order.accepted"
                await staff.wait_for(type="event", event="order_confirmation")
                assert orders.sent_seq and stomp.subscribers  # bookkeeping while listened to
        finally:
            await staff.close()

        for _ in range(200):
            if not registry.connections and not stomp.connections:
                break
            await asyncio.sleep(0.02)
        assert not registry.connections and not stomp.connections
        for _ in range(50):
            order = await live.order()
            await live.post(f"/v1/orders/{order['id']}/transitions", {"to": "accepted"})
        await asyncio.sleep(0.2)
        assert orders.sent_seq == {} and orders.live_seq == {} and registry.by_name == {}
        assert all(not s.channels and not s.users for s in registry.apps.values())
        assert len(orders.last_state) <= pusher_orders.LAST_STATE_ENTRIES
        assert len(orders.locations) <= pusher_orders.LOCATION_ENTRIES
        assert isinstance(stomp, StompGateway)
        assert stomp.subscribers == {} and stomp._plans == {} and not stomp.out.pending


async def test_stomp_per_order_bookkeeping_is_bounded_and_loses_nothing(world: World) -> None:
    """A subscription remembers at most ``max_tracked_orders`` orders; forgetting the oldest
    never drops a message (at worst a replay could repeat one)."""
    from ordercast.gateway.stomp import StompConfig

    rt = world.runtime
    gateway = await start_stomp(rt, StompConfig(max_tracked_orders=2))
    kds = await world.new_app("kds")
    async with raw_client(rt.gateway.url("/ws"), max_queue=256) as c:
        await c.connect(kds["key"], kds["secret"])
        assert (await c.subscribe(f"/kds/{world.tenant_id}/{world.location_id}")).command == (
            "RECEIPT"
        )
        ids = [o["id"] for o in await asyncio.gather(*(world.order() for _ in range(5)))]
        await asyncio.gather(*(world.move(i, "accepted") for i in ids))
        got = await _collect(c, 10)
        [entry] = [e for subs in gateway.subscribers.values() for e in subs]
        assert len(entry.seqs) <= 2
    assert {i: s for i, s in got["sub-0"].items()} == {i: [1, 2] for i in ids}
