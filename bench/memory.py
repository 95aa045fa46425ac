"""Gateway memory after many orders with no subscriber left: RSS and the per-order maps.

    .venv/bin/python bench/memory.py --orders 100000
    .venv/bin/python bench/memory.py --orders 100000 --db postgresql

One process: a runtime (SQLite file in a temporary folder, or a fresh PostgreSQL database,
and the in-process bus) with both gateways on a loopback port. Real WebSocket clients
(``websockets``) subscribe: ``--stomp`` STOMP connections to ``/kds/{tenant}/{venue}`` and
``/venue/…``, one Pusher connection to ``presence-r-{location}`` and to ``private-o-`` of the
warm-up orders. ``--warmup`` orders are created and moved while they listen, then every
client disconnects. The baseline RSS is read then (after a full ``gc.collect()``); then
``--orders`` more orders reach the gateways with no subscriber, and RSS is read again.
``--via bus`` (default): each order's two bus messages (created, accepted; the warm-up's
real messages with fresh order and event ids) are published on the bus, which hands them
to the hub and both gateways exactly as after a commit: the gateways' and hub's memory
without the store's. ``--via service``: created and changed through ``OrderService`` with
``--concurrency`` writers (real writes; slow on a busy box, and the store's caches count).
Prints both RSS figures, the growth, and the sizes of every per-order / per-channel map of
the gateways, the hub and the store's cache. RSS from ``/proc/self/status`` (VmRSS).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from typing import Any

from _db import bench_database  # bench/_db.py (these scripts run with bench/ on sys.path)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def settled_rss() -> float:
    gc.collect()
    return rss_mib()


def fresh_order(template: list[Any], order_id: str) -> list[Any]:
    """The template order's bus messages as those of another order (new ids)."""
    from ordercast.ports import BusMessage

    out = []
    for n, message in enumerate(template):
        payload = json.loads(json.dumps(message.payload))
        payload["order"]["id"] = order_id
        for event in payload["events"]:
            event["order_id"] = order_id
            event["event_id"] = f"evt_{order_id}_{n}_{event['seq']}"
        out.append(BusMessage(message.kind, payload))
    return out


def maps(rt: Any) -> dict[str, int]:
    """Sizes of the per-order / per-channel maps (whatever this version has)."""
    pusher = rt.gateway.extensions["pusher"]
    # Since issue 13 the maps sit in the gateway's parts (registry, order channels).
    parts = [getattr(pusher, "channels", None), getattr(pusher, "orders", None), pusher]
    out: dict[str, int] = {}
    for name in ("sent_seq", "live_seq", "last_state", "locations", "by_name", "connections"):
        for part in parts:
            value = getattr(part, name, None)
            if isinstance(value, dict):
                out[f"pusher.{name}"] = len(value)
                break
    apps = next(p.apps for p in parts if hasattr(p, "apps"))
    out["pusher.channels"] = sum(len(s.channels) for s in apps.values())
    out["pusher.cache"] = sum(len(s.cache) for s in apps.values())
    for consumer in rt.hub.consumers:
        if type(consumer).__name__ == "StompGateway":
            out["stomp.subscribers"] = len(consumer.subscribers)
            out["stomp.connections"] = len(consumer.connections)
            out["stomp.plans"] = len(consumer._plans)
    last_seq = getattr(rt.hub, "last_seq", None)  # the hub's hole finder (since a6a08cc)
    if last_seq is not None:
        out["hub.last_seq"] = len(last_seq)
    recent = getattr(rt.store, "_recent", None)
    if recent is not None:
        out["store.recent_orders"] = len(recent)
    return out


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    import websockets

    from ordercast.domain.access import AppPrincipal
    from ordercast.protocols.pusher.auth import sign_channel
    from ordercast.runtime import Runtime
    from ordercast.settings import Settings

    rt = await Runtime.open(
        Settings(database_url=url, admin_token="bench-admin-token", log_level="warning")
    )
    try:
        if getattr(rt, "stomp", None) is None:  # before issue 13: `ordercast run` installed it
            from ordercast.gateway.stomp import install  # type: ignore[attr-defined]

            install(rt)
        await rt.gateway.start(host="127.0.0.1", port=0)
        d = rt.directory
        tenant = await d.create_tenant("T")
        location = await d.create_location(
            tenant_id=tenant.id, name="L", timezone="UTC", settings={}
        )
        created = await d.create_app(
            tenant_id=tenant.id, name="C", kind="channel", location_ids=[location.id]
        )
        kds = await d.create_app(
            tenant_id=tenant.id, name="K", kind="kds", location_ids=[location.id]
        )
        app = created.app
        principal = AppPrincipal(app.id, tenant.id, "channel", frozenset({location.id}))
        spec = {
            "location_id": location.id,
            "type": "pickup",
            "items": [{"name": "Burger", "quantity": 1, "unit_price": 899}],
        }

        async def order_with_change() -> str:
            order = await rt.orders.create(principal, dict(spec))
            await rt.orders.transition(principal, order.id, to="accepted")
            return str(order.id)

        port = rt.gateway.bound_port
        clients: list[Any] = []
        for _ in range(args.stomp):
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", max_queue=None)
            clients.append(ws)
            await ws.send(
                f"CONNECT\naccept-version:1.2\nlogin:{kds.app.key}\npasscode:{kds.secret}\n\n\x00"
            )
            await ws.recv()
            for i, dest in enumerate(
                (f"/kds/{tenant.id}/{location.id}", f"/venue/{tenant.id}/{location.id}")
            ):
                await ws.send(f"SUBSCRIBE\nid:s{i}\ndestination:{dest}\n\n\x00")
        pusher = await websockets.connect(
            f"ws://127.0.0.1:{port}/app/{app.key}?protocol=7", max_queue=None
        )
        clients.append(pusher)
        socket_id = json.loads(json.loads(await pusher.recv())["data"])["socket_id"]

        async def subscribe(channel: str, channel_data: str | None = None) -> None:
            auth = sign_channel(app.key, created.secret, socket_id, channel, channel_data)
            data: dict[str, Any] = {"channel": channel, "auth": auth}
            if channel_data is not None:
                data["channel_data"] = channel_data
            await pusher.send(json.dumps({"event": "pusher:subscribe", "data": data}))

        await subscribe(f"presence-r-{location.id}", json.dumps({"user_id": "staff"}))
        tap = rt.bus.listen()
        warm = [await order_with_change() for _ in range(args.warmup)]
        template = []
        async for message in tap:
            if message.kind == "order" and message.payload["order"]["id"] == warm[-1]:
                template.append(message)
                if len(template) == 2:
                    break
        await tap.close()
        for order_id in warm:
            await subscribe(f"private-o-{order_id}")
        for order_id in warm:
            await rt.orders.note(principal, order_id, text="warm")
        await asyncio.sleep(0.5)
        for ws in clients:
            await ws.close()
        await asyncio.sleep(0.5)
        with_subscribers = maps(rt)
        baseline = settled_rss()
        start = time.perf_counter()
        done = 0
        if args.via == "service":
            while done < args.orders:
                batch = min(args.concurrency, args.orders - done)
                await asyncio.gather(*(order_with_change() for _ in range(batch)))
                done += batch
        else:
            for i in range(args.orders):
                for message in fresh_order(template, f"ord_bench{i:08d}"):
                    await rt.bus.publish(message)
                    await asyncio.sleep(0)  # the hub dispatches as after a commit
        elapsed = time.perf_counter() - start
        await asyncio.sleep(0.5)
        after = settled_rss()
        return {
            "orders": args.orders,
            "via": args.via,
            "changes_per_s": round(2 * args.orders / elapsed),
            "rss_baseline_mib": round(baseline, 1),
            "rss_after_mib": round(after, 1),
            "rss_growth_mib": round(after - baseline, 1),
            "maps_after_subscribers_left": with_subscribers,
            "maps_after_orders": maps(rt),
        }
    finally:
        await rt.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--stomp", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--via", choices=("bus", "service"), default="bus")
    args = parser.parse_args()
    async with bench_database(args.db) as url:
        result = await run(url, args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
