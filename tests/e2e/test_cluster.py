"""Cluster mode with real processes: PostgreSQL + Redis + three ``ordercast run`` nodes behind
nginx (started by deploy/trial.py from deploy/nginx/ordercast.conf.template), and the
unmodified clients (pusher-js, laravel-echo, the ``pusher`` server SDK, @stomp/stompjs).

What a client sees must not depend on the node it reached: triggers, batch triggers,
sendToUser, client events and terminations cross nodes; presence rosters, channel counts
and Pusher webhooks are the cluster's; a SIGKILLed node's members are removed within the
documented bound and its clients resume on a live node by ``seq``; a webhook burst spread
over the nodes is delivered once per event id.

The nodes beat every 0.5 s and are reaped after 3 s of silence (ORDERCAST_CLUSTER_*), so the
kill test waits seconds, not the default 12 s bound. The last test kills a node, so it runs
last (file order) and restarts it as a late joiner.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from support.live import ADMIN as POS_ADMIN
from support.paths import ROOT
from support.pos import Channel, SimulatedPos, provision
from support.pusher import NodeClient, need_node
from support.services import (
    PG_HOST,
    PG_PORT,
    REDIS_URL,
    create_database,
    drop_database,
    need_service,
)
from support.webhooks import FAST_RETRIES, Receiver, wait_for

sys.path.insert(0, str(ROOT / "deploy"))
from trial import Trial, nginx_binary

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN = POS_ADMIN  # support.pos's provision() speaks with it too
HEARTBEAT, NODE_TIMEOUT = 0.5, 3.0
#: member_removed for a dead node's members: reaped within NODE_TIMEOUT + HEARTBEAT of its last
#: beat; the rest is slack for a loaded 2-core box (a deadline for hangs, not a timing assert).
REAP_DEADLINE = NODE_TIMEOUT + HEARTBEAT + 6.0


class Cluster:
    def __init__(self, trial: Trial, receiver: Receiver, http: httpx.AsyncClient) -> None:
        self.trial = trial
        self.receiver = receiver
        self.http = http  # through nginx
        self.admin = {"Authorization": f"Bearer {ADMIN}"}
        self.clients: list[NodeClient] = []

    def node_http(self, i: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.trial.nodes[i].http, timeout=10)

    async def world(self, **app_settings: Any) -> dict[str, Any]:
        """A tenant, a location and a staff app of kind channel (client events on)."""
        h = self.http
        tenant = (await h.post("/v1/tenants", headers=self.admin, json={"name": "T"})).json()
        loc = (
            await h.post(
                "/v1/locations",
                headers=self.admin,
                json={"tenant_id": tenant["id"], "name": "L", "timezone": "UTC"},
            )
        ).json()
        app = (
            await h.post(
                "/v1/apps",
                headers=self.admin,
                json={
                    "tenant_id": tenant["id"],
                    "name": "staff",
                    "kind": "channel",
                    "location_ids": [loc["id"]],
                    "settings": {"client_events": True, **app_settings},
                },
            )
        ).json()
        assert "secret" in app, app
        basic = base64.b64encode(f"{app['key']}:{app['secret']}".encode()).decode()
        return {"tenant": tenant["id"], "loc": loc["id"], "app": app, "basic": basic}

    async def endpoint(self, world: dict[str, Any], dialect: str, path: str) -> None:
        app = world["app"]
        r = await self.http.post(
            f"/v1/apps/{app['id']}/endpoints",
            headers=self.admin,
            json={"url": f"http://127.0.0.1:{self.receiver.port}/{path}", "dialect": dialect},
        )
        assert r.status_code == 201, r.text

    async def pusher_js(self, world: dict[str, Any], **config: Any) -> NodeClient:
        base = self.trial.http
        client = await NodeClient.start(
            "pusher_client.mjs",
            {
                "key": world["app"]["key"],
                "wsPort": self.trial.ws_port,
                "authEndpoint": f"{base}/pusher/auth",
                "userAuthEndpoint": f"{base}/pusher/user-auth",
                "authHeaders": {"Authorization": f"Basic {world['basic']}"},
                **config,
            },
        )
        self.clients.append(client)
        return client

    async def sdk(self, world: dict[str, Any], node: int) -> NodeClient:
        app = world["app"]
        client = await NodeClient.start(
            "cluster_sdk.mjs",
            {
                "appId": app["id"],
                "key": app["key"],
                "secret": app["secret"],
                "host": "127.0.0.1",
                "port": self.trial.nodes[node].http_port,
            },
        )
        self.clients.append(client)
        return client

    def pusher_hooks(self) -> list[dict[str, Any]]:
        events = []
        for item in self.receiver.received:
            if item.path == "/pusher":
                events.extend(item.json["events"])
        return events


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    need_service("PostgreSQL", PG_HOST, PG_PORT)
    need_service("Redis", "127.0.0.1", 6379)
    need_node()
    if nginx_binary() is None:
        if os.environ.get("ORDERCAST_REQUIRE_SERVICES") == "1":
            pytest.fail("nginx is not installed and ORDERCAST_REQUIRE_SERVICES=1")
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    database_url = await create_database(f"ordercast_cluster_{os.getpid()}")
    receiver = Receiver()
    await receiver.start()
    trial = Trial(
        database_url,
        REDIS_URL,
        3,
        ordercast=str(Path(sys.executable).with_name("ordercast")),
        env={
            "ORDERCAST_ADMIN_TOKEN": ADMIN,
            "ORDERCAST_SECRET_KEY": "cluster-test-secret-key-" + secrets.token_hex(8),
            "ORDERCAST_BUS_PREFIX": f"octest:{secrets.token_hex(4)}:",
            "ORDERCAST_CLUSTER_HEARTBEAT": str(HEARTBEAT),
            "ORDERCAST_CLUSTER_NODE_TIMEOUT": str(NODE_TIMEOUT),
            "ORDERCAST_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
            "ORDERCAST_WEBHOOK_POLL_SECONDS": "0.2",
            "ORDERCAST_WEBHOOK_LEASE_SECONDS": "3",
            "ORDERCAST_WEBHOOK_RETRY_SCHEDULE": FAST_RETRIES,
            "ORDERCAST_DEMO": "false",
            "ORDERCAST_POS_CALLBACK_TIMEOUT": "2",
            "ORDERCAST_POS_TIMER_POLL_SECONDS": "0.2",
        },
    )
    try:
        await trial.start()
        async with httpx.AsyncClient(base_url=trial.http, timeout=10) as http:
            c = Cluster(trial, receiver, http)
            try:
                yield c
            finally:
                for client in c.clients:
                    await client.close()
    except BaseException:
        print(trial.logs())
        raise
    finally:
        t0 = time.monotonic()
        await trial.stop()
        print("cluster stop:", trial.stop_times)
        await receiver.stop()
        print("teardown", time.monotonic() - t0)
        await drop_database(database_url)


async def connected(client: NodeClient) -> str:
    msg = await expect(client, type="connected")
    socket_id: str = msg["socket_id"]
    return socket_id


async def expect(
    client: NodeClient, n: int = 1, within: float = 15, **match: Any
) -> dict[str, Any]:
    """The ``n``-th message matching ``match`` the client printed, reading on until it comes
    (messages of several channels may come in any order)."""
    deadline = time.monotonic() + within
    while True:
        found = events_of(client, **match)
        if len(found) >= n:
            return found[n - 1]
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {n}th {match} within {within} s; seen: {client.seen[-20:]}")
        with contextlib.suppress(TimeoutError):
            await client.next(within=left)


def events_of(client: NodeClient, **match: Any) -> list[dict[str, Any]]:
    return [m for m in client.seen if all(m.get(k) == v for k, v in match.items())]


async def drain_output(client: NodeClient, until: float) -> None:
    """Read what the client printed until ``until`` (monotonic) without failing on silence."""
    while time.monotonic() < until:
        try:
            await client.next(within=max(0.01, until - time.monotonic()))
        except TimeoutError:
            return


async def test_sdk_triggers_user_messages_client_events_and_terminations_cross_nodes(
    cluster: Cluster,
) -> None:
    world = await cluster.world()
    presence = f"presence-r-{world['loc']}"
    clients = [await cluster.pusher_js(world, channels=["news", presence]) for _ in range(3)]
    sockets = [await connected(c) for c in clients]
    for c in clients:
        await expect(c, type="subscribed", channel="news")
        await expect(c, type="subscribed", channel=presence)
    # Round robin through nginx: the three sockets are on three nodes (socket id prefixes
    # are per process).
    assert len({s.split(".")[0] for s in sockets}) == 3
    sdks = [await cluster.sdk(world, i) for i in range(3)]

    async def call(sdk: NodeClient, **cmd: Any) -> dict[str, Any]:
        sdk.send(cmd)
        reply = await sdk.next()
        assert reply["ok"], reply
        return reply

    # A trigger on each node, a batch on node 1; every client (on every node) gets all.
    for i, sdk in enumerate(sdks):
        reply = await call(
            sdk,
            op="trigger",
            channel="news",
            event=f"from-node-{i}",
            data={"i": i},
            info="subscription_count",
        )
        assert reply["body"] == {"channels": {"news": {"subscription_count": 3}}}
    await call(
        sdks[1],
        op="batch",
        events=[
            {"channel": "news", "name": "batch-a", "data": "1"},
            {"channel": "news", "name": "batch-b", "data": "2"},
        ],
    )
    wanted = ["from-node-0", "from-node-1", "from-node-2", "batch-a", "batch-b"]
    for c in clients:
        for event in wanted:
            await expect(c, type="event", channel="news", event=event)
    # The channel queries answer for the cluster, from any node.
    for sdk in sdks:
        reply = await call(sdk, op="get", path="/channels", params={"info": "subscription_count"})
        assert reply["body"]["channels"]["news"] == {"subscription_count": 3}
        reply = await call(sdk, op="get", path=f"/channels/{presence}/users")
        assert sorted(u["id"] for u in reply["body"]["users"]) == sorted(
            f"staff-{s}" for s in sockets
        )
        reply = await call(
            sdk, op="get", path=f"/channels/{presence}", params={"info": "user_count"}
        )
        assert reply["body"] == {"occupied": True, "user_count": 3}

    # A client event from client 0 reaches clients 1 and 2 (other nodes), not client 0.
    clients[0].send(
        {"cmd": "client_event", "channel": presence, "event": "client-hi", "data": {"n": 1}}
    )
    for c in clients[1:]:
        msg = await expect(c, type="event", channel=presence, event="client-hi")
        assert msg["data"] == {"n": 1}

    # sendToUser from every node reaches the signed-in user wherever it is connected.
    for c in clients:
        c.send({"cmd": "signin"})
    users = [(await expect(c, type="signed_in"))["id"] for c in clients]
    for i, sdk in enumerate(sdks):
        await call(sdk, op="sendToUser", user=users[(i + 1) % 3], event="direct", data={"i": i})
    for i in range(3):
        msg = await expect(clients[(i + 1) % 3], type="user_event", event="direct")
        assert msg["data"] == {"i": i}

    # terminate_connections on node 0 closes client 2's socket on its node only.
    await call(sdks[0], op="terminate", user=users[2])
    await expect(clients[2], type="connection_error")
    await expect(clients[1], type="member_removed", channel=presence, id=users[2])
    # Nothing arrived twice (the relays never loop back to the sending node).
    for c in clients[:2]:
        counts = Counter(m["event"] for m in events_of(c, type="event", channel="news"))
        assert counts == dict.fromkeys(wanted, 1)
        assert len(events_of(c, type="user_event")) == 1
    assert events_of(clients[0], type="event", channel=presence) == []


async def test_echo_presence_members_on_different_nodes_and_webhooks_once(
    cluster: Cluster,
) -> None:
    world = await cluster.world()
    await cluster.endpoint(world, "pusher", "pusher")
    room = f"r-{world['loc']}"
    presence = f"presence-{room}"
    echo = []
    sockets = []
    for n in range(3):
        client = await cluster.pusher_js(world, echo=True, channels=[presence])
        sockets.append(await connected(client))
        msg = await expect(client, type="subscribed", channel=presence)
        assert msg["members"] == n + 1  # .here(): everyone already in, on any node
        echo.append(client)
    users = [f"staff-{s}" for s in sockets]
    assert len({s.split(".")[0] for s in sockets}) == 3
    # Each sees the later ones join, whichever node they are on. (Echo's joining/leaving
    # callbacks get the member's user_info, without the id: the hooks below name the users.)
    await expect(echo[0], n=2, type="member_added")
    await expect(echo[1], type="member_added")
    # One leaves: the others see it leave.
    echo[1].send({"cmd": "disconnect"})
    await expect(echo[0], type="member_removed")
    await expect(echo[2], type="member_removed")
    echo[0].send({"cmd": "disconnect"})
    await expect(echo[2], n=2, type="member_removed")
    assert [len(events_of(c, type="member_added")) for c in echo] == [2, 1, 0]
    assert [len(events_of(c, type="member_removed")) for c in echo] == [1, 0, 2]
    echo[2].send({"cmd": "disconnect"})

    def hooks() -> list[tuple[str, str | None]]:
        return [
            (e["name"], e.get("user_id"))
            for e in cluster.pusher_hooks()
            if e.get("channel") == presence
        ]

    expected = {
        ("channel_occupied", None): 1,
        ("member_added", users[0]): 1,
        ("member_added", users[1]): 1,
        ("member_added", users[2]): 1,
        ("member_removed", users[0]): 1,
        ("member_removed", users[1]): 1,
        ("member_removed", users[2]): 1,
        ("channel_vacated", None): 1,
    }
    # Webhooks are separate deliveries (member_removed is held 1 s for a member who may come
    # back): wait until every expected one arrived, then for any late duplicate.
    await wait_for(lambda: set(expected) <= set(hooks()), 15, f"webhooks: {hooks()}")
    await asyncio.sleep(1.5)
    # Once per cluster transition, not once per node.
    assert Counter(hooks()) == expected
    assert hooks()[0] == ("channel_occupied", None)
    # The last member_removed and channel_vacated are one moment's two webhooks, sent by
    # whichever worker claims each first (Pusher does not order webhooks either: receivers
    # go by time_ms); everything that came before the vacancy arrived before it.
    order = hooks()
    vacated = order.index(("channel_vacated", None))
    assert all(order.index(("member_added", u)) < vacated for u in users)


async def test_stomp_venue_settings_and_order_changes_cross_nodes(cluster: Cluster) -> None:
    world = await cluster.world()
    kds = (
        await cluster.http.post(
            "/v1/apps",
            headers=cluster.admin,
            json={
                "tenant_id": world["tenant"],
                "name": "kds",
                "kind": "kds",
                "location_ids": [world["loc"]],
            },
        )
    ).json()
    stomps = []
    for _ in range(3):  # through nginx: one on each node
        client = await NodeClient.start("stomp_client.mjs", {})
        cluster.clients.append(client)
        await expect(client, ev="ready")
        client.send(
            {
                "op": "connect",
                "url": f"{cluster.trial.ws}/ws",
                "login": kds["key"],
                "passcode": kds["secret"],
            }
        )
        await expect(client, ev="connected")
        for dest, receipt in (
            (f"/venue/{world['tenant']}/{world['loc']}", "v"),
            (f"/kds/{world['tenant']}/{world['loc']}", "k"),
        ):
            client.send({"op": "subscribe", "destination": dest, "receipt": receipt})
            await expect(client, ev="receipt", id=receipt)
        stomps.append(client)
    # A settings change on node 2, an order and a notification on node 0 and 1.
    async with cluster.node_http(2) as h2:
        r = await h2.patch(
            f"/v1/locations/{world['loc']}", headers=cluster.admin, json={"name": "Renamed"}
        )
        assert r.status_code == 200, r.text
    app = world["app"]
    async with cluster.node_http(0) as h0, cluster.node_http(1) as h1:
        r = await h0.post(
            "/v1/orders",
            auth=(app["key"], app["secret"]),
            json={
                "location_id": world["loc"],
                "type": "pickup",
                "items": [{"pos_id": "b", "name": "Burger", "quantity": 1, "unit_price": 900}],
                "consumer": {"name": "Ada"},
            },
        )
        assert r.status_code == 201, r.text
        order = r.json()
        r = await h1.post(
            f"/v1/orders/{order['id']}/notifications",
            auth=(app["key"], app["secret"]),
            json={"type": "order_time_changed", "message": "ten more minutes"},
        )
        assert r.status_code in (200, 201), r.text
    for client in stomps:
        venue = await expect(client, ev="message")
        assert json.loads(venue["body"])["name"] == "Renamed"
        first = json.loads((await expect(client, n=2, ev="message"))["body"])
        second = json.loads((await expect(client, n=3, ev="message"))["body"])
        assert first["id"] == second["id"] == order["id"]
        seqs = [int(m["headers"]["seq"]) for m in events_of(client, ev="message")[1:]]
        assert seqs == [1, 2]


async def test_webhook_burst_over_nodes_delivered_once_per_event_id(cluster: Cluster) -> None:
    world = await cluster.world()
    await cluster.endpoint(world, "ordercast", "orders")
    app = world["app"]
    auth = (app["key"], app["secret"])
    nodes = [cluster.node_http(i) for i in range(3)]
    try:

        async def one(i: int) -> str:
            h = nodes[i % 3]
            r = await h.post(
                "/v1/orders",
                auth=auth,
                json={
                    "location_id": world["loc"],
                    "type": "pickup",
                    "items": [{"pos_id": "b", "name": "B", "quantity": 1, "unit_price": 100}],
                    "consumer": {"name": f"c{i}"},
                },
            )
            assert r.status_code == 201, r.text
            order_id: str = r.json()["id"]
            for n in range(2):  # the next changes on the other nodes
                r = await nodes[(i + n + 1) % 3].post(
                    f"/v1/orders/{order_id}/notes", auth=auth, json={"text": f"note {n}"}
                )
                assert r.status_code in (200, 201), r.text
            return order_id

        order_ids = await asyncio.gather(*(one(i) for i in range(30)))
        truth: set[str] = set()
        for order_id in order_ids:
            r = await cluster.http.get(f"/v1/orders/{order_id}/events", auth=auth)
            truth |= {e["event_id"] for e in r.json()["events"]}
    finally:
        for h in nodes:
            await h.aclose()
    assert len(truth) == 90

    def delivered() -> list[dict[str, Any]]:
        return [
            {"id": item.webhook_id, **item.json["data"]}
            for item in cluster.receiver.received
            if item.path == "/orders"
        ]

    await wait_for(lambda: len({d["event_id"] for d in delivered()}) >= 90, 30, "90 events")
    await asyncio.sleep(1.0)  # a duplicate, if any node sent one, would arrive by now
    got = delivered()
    assert {d["event_id"] for d in got} == truth
    # Once per event id: one webhook message (one webhook-id) per event, whichever node
    # claimed it. A repeat may only be a retry of that message under the same webhook-id
    # (at-least-once: e.g. a lease that ran out on a loaded box), never a second message.
    ids_per_event: dict[str, set[str]] = {}
    for d in got:
        ids_per_event.setdefault(d["event_id"], set()).add(d["id"])
    assert all(len(ids) == 1 for ids in ids_per_event.values())
    assert len({d["id"] for d in got}) == 90
    for order_id in order_ids:
        seqs = sorted(d["seq"] for d in got if d["order_id"] == order_id)
        assert seqs == [1, 2, 3]


async def test_an_endpoint_added_on_one_node_hears_the_next_change_on_another(
    cluster: Cluster,
) -> None:
    """Each node keeps a location's webhook endpoints between changes; the database's
    ``webhook_targets`` revision (bumped by triggers) tells every node at its next write that
    they changed. Node 1 writes a change first, so it holds the location's endpoints (one)
    when node 0 adds a second: node 1's very next change must reach both, and after node 0
    deletes it, only the first."""
    world = await cluster.world()
    app = world["app"]
    auth = (app["key"], app["secret"])
    a, b = cluster.node_http(0), cluster.node_http(1)
    order_id = ""

    def heard(path: str) -> list[str]:
        return [
            item.json["data"]["event_id"]
            for item in cluster.receiver.received
            if item.path == f"/{path}" and item.json["data"]["order_id"] == order_id
        ]

    try:

        async def add(path: str) -> str:
            r = await a.post(
                f"/v1/apps/{app['id']}/endpoints",
                headers=cluster.admin,
                json={"url": f"http://127.0.0.1:{cluster.receiver.port}/{path}"},
            )
            assert r.status_code == 201, r.text
            endpoint_id: str = r.json()["id"]
            return endpoint_id

        await add("targets-one")
        r = await b.post(
            "/v1/orders",
            auth=auth,
            json={
                "location_id": world["loc"],
                "type": "pickup",
                "items": [{"pos_id": "b", "name": "B", "quantity": 1, "unit_price": 100}],
            },
        )
        assert r.status_code == 201, r.text
        order_id = r.json()["id"]

        async def note_on_b(text: str) -> str:
            r = await b.post(f"/v1/orders/{order_id}/notes", auth=auth, json={"text": text})
            assert r.status_code == 200, r.text
            event_id: str = r.json()["events"][-1]["event_id"]
            return event_id

        first = await note_on_b("before")
        second_endpoint = await add("targets-two")
        second = await note_on_b("after the second endpoint")
        # Delivered before the endpoint goes (deleting it deletes its messages).
        await wait_for(lambda: second in heard("targets-two"), 20, "the note on endpoint two")
        r = await a.delete(
            f"/v1/apps/{app['id']}/endpoints/{second_endpoint}", headers=cluster.admin
        )
        assert r.status_code == 204, r.text
        third = await note_on_b("after it was deleted")
        last = await note_on_b("the last")
    finally:
        await a.aclose()
        await b.aclose()

    notes = {first, second, third, last}
    await wait_for(lambda: notes <= set(heard("targets-one")), 20, "the notes on endpoint one")
    assert first not in heard("targets-two") and third not in heard("targets-two")


async def test_pos_fire_timers_and_callback_deadlines_run_once_across_nodes(
    cluster: Cluster,
) -> None:
    """Every node runs a POS timer runner on the same table: each fire timer and each
    callback deadline runs once (a FIRE_ORDER per order, one TIMEOUT failure)."""
    pos, channel = SimulatedPos(), Channel()
    await pos.start()
    await channel.start()

    class Balancer:  # provision() only needs the base URL: nginx, so calls spread over nodes
        base = cluster.trial.http

    setup = await provision(Balancer(), pos, channel)  # type: ignore[arg-type]
    try:
        fired = [await setup.order(fire_order_in_seconds=1) for _ in range(6)]
        silent = [await setup.order({"commit": "silent"}) for _ in range(3)]
        for order in fired:
            done = await setup.wait_status(order["id"], "preparing")
            assert done["fired_by"] == "timer"
        for order in silent:
            failed = await setup.wait_status(order["id"], "failed")
            assert failed["rejection_code"] == "TIMEOUT"
        await asyncio.sleep(1.0)  # a second run of any timer would show by now
        for order in fired:
            assert len(pos.of(order["id"], "FIRE_ORDER")) == 1
            assert len(pos.of(order["id"], "COMMIT_ORDER")) == 1
        for order in silent:
            assert pos.of(order["id"], "FIRE_ORDER") == []
            assert [e["type"] for e in await setup.events(order["id"])].count("order.failed") == 1
            hooks = [
                m
                for m in channel.received
                if m["type"] == "order.failed" and m["data"]["order_id"] == order["id"]
            ]
            assert len(hooks) == 1
        assert not [r for r in pos.received if "bad_signature" in r]
    finally:
        await setup.http.aclose()
        await pos.stop()
        await channel.stop()


async def test_sigkill_node_mid_burst_members_removed_clients_resume(cluster: Cluster) -> None:
    world = await cluster.world()
    await cluster.endpoint(world, "ordercast", "burst")
    app = world["app"]
    auth = (app["key"], app["secret"])
    presence = f"presence-r-{world['loc']}"
    orders = []
    for _ in range(3):
        r = await cluster.http.post(
            "/v1/orders",
            auth=auth,
            json={
                "location_id": world["loc"],
                "type": "pickup",
                "items": [{"pos_id": "b", "name": "B", "quantity": 1, "unit_price": 100}],
                "consumer": {"name": "k"},
            },
        )
        assert r.status_code == 201, r.text
        orders.append(r.json()["id"])
    channels = [f"private-o-{o}" for o in orders]
    clients = [await cluster.pusher_js(world, channels=[presence, *channels]) for _ in range(6)]
    sockets = [await connected(c) for c in clients]
    for c in clients:
        for ch in (presence, *channels):
            await expect(c, type="subscribed", channel=ch)
    victim_node = 2
    assert len({s.split(".")[0] for s in sockets}) == 3  # two clients on each node

    stop = asyncio.Event()
    sent = Counter[str]()

    async def burst() -> None:
        i = 0
        while not stop.is_set():
            order_id = orders[i % 3]
            try:
                r = await cluster.http.post(
                    f"/v1/orders/{order_id}/notes", auth=auth, json={"text": f"n{i}"}
                )
                if r.status_code in (200, 201):
                    sent[order_id] += 1
            except httpx.HTTPError:
                pass  # the request died with the node: the event log says what happened
            i += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(burst())
    await asyncio.sleep(1.0)
    cluster.trial.kill(cluster.trial.nodes[victim_node])
    killed_at = time.monotonic()
    await asyncio.sleep(1.5)
    stop.set()
    await task

    # The victims: clients whose connection dropped (they reconnect through nginx).
    async def settle(c: NodeClient) -> None:
        await drain_output(c, time.monotonic() + 0.2)

    await asyncio.gather(*(settle(c) for c in clients))

    def dropped(c: NodeClient) -> bool:
        states = [m["current"] for m in c.seen if m.get("type") == "state"]
        first = states.index("connected")
        return any(state != "connected" for state in states[first + 1 :])

    victims = [i for i, c in enumerate(clients) if dropped(c)]
    survivors = [i for i in range(6) if i not in victims]
    assert 1 <= len(victims) <= 3 and survivors
    victim_users = {f"staff-{sockets[i]}" for i in victims}
    # Every survivor sees each victim's old member removed, within the bound.
    for i in survivors:
        for user in victim_users:
            await expect(
                clients[i],
                within=max(0.5, REAP_DEADLINE - (time.monotonic() - killed_at)),
                type="member_removed",
                channel=presence,
                id=user,
            )
    removed_after = time.monotonic() - killed_at
    assert removed_after < REAP_DEADLINE
    # Victims are back on a live node, subscribed again.
    for i in victims:
        await expect(clients[i], n=2, type="connected")
        for ch in channels:
            await expect(clients[i], n=2, type="subscribed", channel=ch)

    # No gap: survivors got every event live, once and in order; victims got everything in
    # order until the kill, the latest state on resubscribing, then live — and their app
    # fetches what it missed by seq, as the Open Dining payloads carry it.
    async with httpx.AsyncClient(base_url=cluster.trial.http, timeout=10, auth=auth) as h:
        for order_id, ch in zip(orders, channels, strict=True):
            r = await h.get(f"/v1/orders/{order_id}/events", params={"limit": 1000})
            events = r.json()["events"]
            last = events[-1]["seq"]
            assert last >= 1 + sent[order_id]
            for i in range(6):
                await wait_for(
                    lambda i=i, ch=ch, last=last: any(
                        m["data"]["seq"] == last
                        for m in events_of(clients[i], type="event", channel=ch)
                    ),
                    10,
                    f"{'survivor' if i in survivors else 'victim'} {i} has seq {last} of {ch}: "
                    f"{[m['data']['seq'] for m in events_of(clients[i], type='event', channel=ch)]}",
                )
                seqs = [m["data"]["seq"] for m in events_of(clients[i], type="event", channel=ch)]
                assert seqs == sorted(set(seqs)), (i, seqs)  # in order, never twice
                notes = [s for s in seqs if s >= 2]  # every note renders an order_tracker
                if i in survivors:
                    assert notes == list(range(2, last + 1)), (i, seqs)
                    continue
                cut = next(
                    (k for k in range(1, len(notes)) if notes[k] != notes[k - 1] + 1), len(notes)
                )
                before = notes[:cut]
                assert before == list(range(2, 2 + len(before)))
                resumed = await h.get(
                    f"/v1/orders/{order_id}/events",
                    params={"after_seq": before[-1] if before else 1, "limit": 1000},
                )
                fetched = [e["seq"] for e in resumed.json()["events"]]
                assert set(range(2, last + 1)) <= set(before) | set(fetched), (i, seqs)

    # Every event of the burst was delivered by the webhook workers, the dead node's claimed
    # ones after their lease by another node; repeats only under the same webhook id.
    truth: set[str] = set()
    async with httpx.AsyncClient(base_url=cluster.trial.http, timeout=10, auth=auth) as h:
        for order_id in orders:
            r = await h.get(f"/v1/orders/{order_id}/events", params={"limit": 1000})
            truth |= {e["event_id"] for e in r.json()["events"]}

    def burst_hooks() -> list[tuple[str, str]]:
        return [
            (item.webhook_id, item.json["data"]["event_id"])
            for item in cluster.receiver.received
            if item.path == "/burst"
        ]

    await wait_for(lambda: {e for _, e in burst_hooks()} >= truth, 20, "every burst event")
    by_id: dict[str, set[str]] = {}
    for webhook_id, event_id in burst_hooks():
        by_id.setdefault(event_id, set()).add(webhook_id)
    assert all(len(ids) == 1 for ids in by_id.values())

    # The killed node, started again, is a late joiner: it knows the cluster's presence
    # roster and sends each order channel's latest state once.
    node = cluster.trial.nodes[victim_node]
    await cluster.trial.start_node(node)
    late = await NodeClient.start(
        "pusher_client.mjs",
        {
            "key": app["key"],
            "wsPort": node.ws_port,
            "authEndpoint": f"{node.http}/pusher/auth",
            "authHeaders": {"Authorization": f"Basic {world['basic']}"},
            "channels": [presence, channels[0]],
        },
    )
    cluster.clients.append(late)
    members = (await expect(late, type="subscribed", channel=presence))["members"]
    assert members == 6 + 1  # six live users (victims back with new ids) and this one
    first = await expect(late, type="event", channel=channels[0])
    await drain_output(late, time.monotonic() + 0.5)
    assert len(events_of(late, type="event", channel=channels[0])) == 1
    r = await cluster.http.get(f"/v1/orders/{orders[0]}", auth=auth)
    assert first["data"]["seq"] == r.json()["version"]


async def test_drain_moves_clients_to_other_nodes(cluster: Cluster) -> None:
    """``ordercast drain PID`` (SIGUSR1): /ready 503, new upgrades 503 (nginx passes them on),
    sockets closed with 4200, and the clients reconnect through nginx to the other nodes."""
    world = await cluster.world()
    clients = [await cluster.pusher_js(world, channels=["drain-news"]) for _ in range(3)]
    sockets = [await connected(c) for c in clients]
    for c in clients:
        await expect(c, type="subscribed", channel="drain-news")
    drained = cluster.trial.nodes[0]
    assert drained.proc is not None
    os.kill(drained.proc.pid, signal.SIGUSR1)  # what `ordercast drain PID` sends
    async with httpx.AsyncClient(base_url=drained.http, timeout=10) as h:
        await wait_for(lambda: _status(h, "/ready", 503), 10, "the drained node's /ready says 503")
    # The one client on the drained node reconnects elsewhere; the others stay.
    moved = []
    for i, c in enumerate(clients):
        await drain_output(c, time.monotonic() + 0.3)
        if len(events_of(c, type="connected")) > 1 or any(
            m.get("type") == "connection_error" for m in c.seen
        ):
            moved.append(i)
    # (one with three live nodes; two if nginx still counts the restarted node as failed)
    assert 1 <= len(moved) < len(clients)
    for i in moved:
        error = await expect(clients[i], type="connection_error")
        assert error["data"]["code"] == 4200
        again = (await expect(clients[i], n=2, type="connected"))["socket_id"]
        assert again.split(".")[0] != sockets[i].split(".")[0]
        await expect(clients[i], n=2, type="subscribed", channel="drain-news")
    # The drained node's HTTP API still answers; its trigger reaches all three clients.
    app = world["app"]
    sdk = await cluster.sdk(world, 0)
    sdk.send({"op": "trigger", "channel": "drain-news", "event": "after-drain", "data": "x"})
    assert (await sdk.next())["ok"]
    for c in clients:
        await expect(c, type="event", channel="drain-news", event="after-drain")
    assert app["key"]


async def _status(h: httpx.AsyncClient, path: str, status: int) -> bool:
    return (await h.get(path)).status_code == status
