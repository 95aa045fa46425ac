"""Order write path benchmark: REST changes -> committed events, per second.

    .venv/bin/python bench/writes.py --db sqlite --n 2000
    .venv/bin/python bench/writes.py --db postgresql --n 2000 --endpoints 1
    .venv/bin/python bench/writes.py --db sqlite --layer service --n 2000
    .venv/bin/python bench/writes.py --db sqlite --layer service --concurrency 32 --orders 32

In-process: the FastAPI app over ``httpx.ASGITransport`` (no sockets), one tenant, one
location, one channel app (Basic auth) and ``--endpoints`` webhook endpoints (delivery
worker not started, so the outbox only fills). Timed: ``--n`` ``POST /v1/orders/{id}/notes``
(``--layer rest``) or ``OrderService.note`` calls (``--layer service``: the write path
without HTTP) against ``--orders`` orders round-robin (one by default), from
``--concurrency`` concurrent writers (1: sequential). Prints changes/s, p50/p99 ms per
change and the process CPU time per change (all threads: the driver's too), which depends
less on other load on the machine than the rate does. PostgreSQL runs on a fresh database
(127.0.0.1:5432, user postgres) that is dropped afterwards. ``--profile FILE`` writes a
cProfile of the timed loop; ``--threads`` also prints the CPU per change of each thread
(the event loop, the SQLite writer thread, its checkpointer).

``--world rush``: the dinner rush's shape (``bench rush``) without its sockets and receiver:
one location whose POS app has an ``ordatic`` endpoint, its rider app an ``rbi`` one and
its loyalty app a ``doshii`` one (subscribed to every order), ``--orders`` orders placed by
the channel app (the rush's two items and consumer); timed: every order's lifecycle (the
rush's steps: accepted, a note, preparing, ready, then a courier delivery with three courier
statuses, or completed, or cancelled), one step of every order before the next step of any
(``--n`` is ignored: the changes are the lifecycles' steps). Each change inserts 2.17
outbox rows on average, as in the rush. ``--deliver`` also runs the webhook delivery worker
against a local receiver and times until every message is delivered; ``--rate R`` paces the
changes (the rush's steady state: small claims and outcome batches, not a backlog).

    .venv/bin/python bench/writes.py --world rush --orders 400 --layer service --threads
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import os
import statistics
import threading
import time
from typing import Any

from _db import bench_database  # bench/_db.py (these scripts run with bench/ on sys.path)


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far of each of this process's threads, by thread
    name (Linux: /proc/self/task; threads that share a name are summed)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:  # the thread ended meanwhile
            continue
        name = names.get(int(tid), "other")
        if name.startswith(("asyncio_", "ThreadPoolExecutor")):
            name = "executor"
        elif name.startswith("Thread-"):
            name = "other"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def rush_steps(i: int) -> list[tuple[str, str | None]]:
    """The rush's lifecycle of order ``i`` after it was placed (bench/rush/loadgen.mjs)."""
    if i % 20 == 7:
        return [("accepted", None), ("cancel", None)]
    steps = [("accepted", None), ("note", None), ("preparing", None), ("ready", None)]
    if i % 4 == 1:
        return [*steps, ("completed", None)]
    return [
        *steps,
        ("delivery", None),
        ("courier", "courier_confirmed"),
        ("courier", "courier_picked_up"),
        ("courier", "courier_dropped_off"),
    ]


async def one_run(url: str, args: argparse.Namespace) -> None:
    import httpx

    from ordercast.app import create_app
    from ordercast.runtime import Runtime
    from ordercast.settings import Settings

    rt = await Runtime.open(
        Settings(
            database_url=url,
            admin_token="bench-admin-token",
            webhook_allow_cidrs="127.0.0.1/32",
            log_level="warning",
        )
    )
    try:
        app = create_app(rt)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            if args.world == "rush":
                await rush_world(rt, http, args)
                return
            admin = {"Authorization": "Bearer bench-admin-token"}
            tenant = (await http.post("/v1/tenants", headers=admin, json={"name": "T"})).json()
            loc = (
                await http.post(
                    "/v1/locations",
                    headers=admin,
                    json={"tenant_id": tenant["id"], "name": "L", "timezone": "UTC"},
                )
            ).json()
            app_body = (
                await http.post(
                    "/v1/apps",
                    headers=admin,
                    json={
                        "tenant_id": tenant["id"],
                        "name": "bench",
                        "kind": "channel",
                        "location_ids": [loc["id"]],
                    },
                )
            ).json()
            token = base64.b64encode(f"{app_body['key']}:{app_body['secret']}".encode())
            auth = {"Authorization": f"Basic {token.decode()}"}
            for i in range(args.endpoints):
                r = await http.post(
                    f"/v1/apps/{app_body['id']}/endpoints",
                    headers=admin,
                    json={"url": f"http://127.0.0.1:9/{i}"},
                )
                assert r.status_code in (200, 201), r.text
            item = {"pos_id": "fries", "name": "Fries", "quantity": 1, "unit_price": 350}
            oids = []
            for _ in range(args.orders):
                r = await http.post(
                    "/v1/orders",
                    headers=auth,
                    json={"location_id": loc["id"], "type": "pickup", "items": [item]},
                )
                assert r.status_code == 201, r.text
                oids.append(r.json()["id"])
            for oid in oids:  # warm-up
                r = await http.post(f"/v1/orders/{oid}/notes", headers=auth, json={"text": "w"})
                assert r.status_code == 200, r.text
            if args.layer == "service":
                from ordercast.domain.access import AppPrincipal

                principal = AppPrincipal(
                    app_id=app_body["id"],
                    tenant_id=tenant["id"],
                    kind="channel",
                    location_ids=frozenset({loc["id"]}),
                )

                async def one(i: int) -> None:
                    await rt.orders.note(principal, oids[i % len(oids)], text=f"note {i}")

            else:

                async def one(i: int) -> None:
                    r = await http.post(
                        f"/v1/orders/{oids[i % len(oids)]}/notes",
                        headers=auth,
                        json={"text": f"note {i}"},
                    )
                    if r.status_code != 200:
                        raise SystemExit(f"note {i}: {r.status_code} {r.text}")

            lat: list[float] = []

            async def writer(start: int) -> None:
                for i in range(start, args.n, args.concurrency):
                    t0 = time.perf_counter()
                    await one(i)
                    lat.append(time.perf_counter() - t0)

            prof = cProfile.Profile() if args.profile else None
            if prof is not None:
                prof.enable()
            started = time.perf_counter()
            cpu0 = time.process_time()
            threads0 = thread_cpu()
            await asyncio.gather(*(writer(c) for c in range(args.concurrency)))
            cpu = time.process_time() - cpu0
            threads1 = thread_cpu()
            elapsed = time.perf_counter() - started
            if prof is not None:
                prof.disable()
                prof.dump_stats(args.profile)
        lat.sort()
        p50 = statistics.median(lat) * 1e3
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
        what = "REST notes" if args.layer == "rest" else "OrderService.note"
        print(
            f"{args.db}: {args.n} {what}, {args.orders} order(s), {args.endpoints} "
            f"endpoint(s), {args.concurrency} writer(s): {args.n / elapsed:,.0f} changes/s, "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, CPU {cpu / args.n * 1e6:,.0f} us/change"
        )
        if args.threads:
            print_threads(threads0, threads1, args.n)
    finally:
        await rt.close()


def basic(app: dict[str, Any]) -> dict[str, str]:
    token = base64.b64encode(f"{app['key']}:{app['secret']}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def rush_world(rt: Any, http: Any, args: argparse.Namespace) -> None:
    """``--world rush`` (see the module docstring)."""
    from ordercast.domain.access import AppPrincipal

    admin = {"Authorization": "Bearer bench-admin-token"}

    async def call(method: str, path: str, body: Any, auth: dict[str, str]) -> Any:
        r = await http.request(method, path, headers=auth, json=body)
        if r.status_code >= 300:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    tenant = await call("POST", "/v1/tenants", {"name": "T"}, admin)
    loc = await call(
        "POST", "/v1/locations", {"tenant_id": tenant["id"], "name": "L", "timezone": "UTC"}, admin
    )
    apps: dict[str, dict[str, Any]] = {}
    for kind, dialect in (
        ("channel", None),
        ("pos", "ordatic"),
        ("rider", "rbi"),
        ("loyalty", "doshii"),
    ):
        apps[kind] = await call(
            "POST",
            "/v1/apps",
            {"tenant_id": tenant["id"], "name": kind, "kind": kind, "location_ids": [loc["id"]]},
            admin,
        )
        if dialect is not None:
            await call(
                "POST",
                f"/v1/apps/{apps[kind]['id']}/endpoints",
                {"url": f"{args.receiver_url}/{kind}", "dialect": dialect},
                admin,
            )
    item = {
        "pos_id": "burger",
        "name": "Cheeseburger",
        "quantity": 2,
        "unit_price": 899,
        "options": [{"name": "Extras", "variants": [{"name": "Bacon", "price": 150}]}],
    }
    fries = {"pos_id": "fries", "name": "Fries", "quantity": 1, "unit_price": 349}
    oids: list[str] = []
    for i in range(args.orders):
        order = await call(
            "POST",
            "/v1/orders",
            {
                "location_id": loc["id"],
                "type": "delivery" if i % 4 != 1 else "pickup",
                "user_id": f"rush-user-{i}",
                "items": [item, fries],
                "consumer": {"name": f"Customer {i}", "phone": "+15550100"},
            },
            basic(apps["channel"]),
        )
        oids.append(order["id"])
        await call("POST", f"/v1/orders/{order['id']}/subscription", None, basic(apps["loyalty"]))
    principals = {
        kind: AppPrincipal(
            app_id=apps[kind]["id"],
            tenant_id=tenant["id"],
            kind=kind,
            location_ids=frozenset({loc["id"]}),
        )
        for kind in ("pos", "rider")
    }
    plans = [rush_steps(i) for i in range(len(oids))]
    # One step of every order, then the next step: the timed changes in order.
    changes = [
        (i, step, arg)
        for k in range(max(len(p) for p in plans))
        for i, p in enumerate(plans)
        if k < len(p)
        for step, arg in [p[k]]
    ]
    deliveries: dict[int, str] = {}
    pos, rider = principals["pos"], principals["rider"]
    orders = rt.orders

    async def service(i: int, step: str, arg: str | None) -> None:
        oid = oids[i]
        if step == "note":
            await orders.note(pos, oid, text="Your order is being made")
        elif step == "cancel":
            await orders.cancel(pos, oid, reason="out of stock", by="venue")
        elif step == "delivery":
            _, deliveries[i] = await orders.start_delivery(pos, oid, provider="rush-couriers")
        elif step == "courier":
            await orders.courier_update(rider, deliveries[i], status=arg)
        else:
            await orders.transition(pos, oid, to=step)

    pos_auth, rider_auth = basic(apps["pos"]), basic(apps["rider"])

    async def rest(i: int, step: str, arg: str | None) -> None:
        oid = oids[i]
        if step == "note":
            await call("POST", f"/v1/orders/{oid}/notes", {"text": "Made"}, pos_auth)
        elif step == "cancel":
            body = {"reason": "out of stock", "by": "venue"}
            await call("POST", f"/v1/orders/{oid}/cancellation", body, pos_auth)
        elif step == "delivery":
            body = {"provider": "rush-couriers"}
            doc = await call("POST", f"/v1/orders/{oid}/deliveries", body, pos_auth)
            deliveries[i] = doc["id"]
        elif step == "courier":
            path = f"/v1/deliveries/{deliveries[i]}/status"
            await call("POST", path, {"status": arg}, rider_auth)
        else:
            await call("POST", f"/v1/orders/{oid}/transitions", {"to": step}, pos_auth)

    one = service if args.layer == "service" else rest
    rows0 = await outbox_rows(rt)
    lat: list[float] = []
    queue = iter(changes)

    paced = iter(range(len(changes)))

    async def writer() -> None:
        for i, step, arg in queue:
            if args.rate:  # change k is due k / rate seconds after the start
                delay = started + next(paced) / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            t0 = time.perf_counter()
            await one(i, step, arg)
            lat.append(time.perf_counter() - t0)

    if args.deliver:
        await rt.start_delivery()
    prof = cProfile.Profile() if args.profile else None
    if prof is not None:
        prof.enable()
    started = time.perf_counter()
    cpu0 = time.process_time()
    threads0 = thread_cpu()
    await asyncio.gather(*(writer() for _ in range(args.concurrency)))
    if args.deliver:  # timed until every message is delivered
        while await rt.webhooks.outbox.open_count():  # noqa: ASYNC110 (a database count)
            await asyncio.sleep(0.02)
    cpu = time.process_time() - cpu0
    threads1 = thread_cpu()
    elapsed = time.perf_counter() - started
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)
    n = len(changes)
    rows = (await outbox_rows(rt)) - rows0
    report(args, f"rush changes ({rows / n:.2f} outbox rows each)", n, elapsed, cpu, lat)
    if args.threads:
        print_threads(threads0, threads1, n)
    if args.bare:
        from rush.bare_writes import bare_write_bound  # bench/ is on sys.path

        await rt.store.connector.close()  # the writer's last commit is in the file
        url = rt.settings.database_url
        bare = await asyncio.to_thread(bare_write_bound, url, "", n, (1,), False)
        print(
            f"  bare driver, the same rows per change (one change per transaction, no "
            f"delivery side): {bare['changes_per_s']:,.0f} changes/s, "
            f"CPU {bare['cpu_us_per_change']:,.0f} us/change"
        )


async def outbox_rows(rt: Any) -> int:
    import sqlalchemy as sa

    async with rt.store.engine.connect() as conn:
        return int((await conn.execute(sa.text("SELECT count(*) FROM webhook_messages"))).scalar())


def report(
    args: argparse.Namespace, what: str, n: int, elapsed: float, cpu: float, lat: list[float]
) -> None:
    lat.sort()
    p50 = statistics.median(lat) * 1e3
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
    print(
        f"{args.db}: {n} {what}, {args.layer}, {args.orders} order(s), "
        f"{args.concurrency} writer(s): {n / elapsed:,.0f} changes/s, "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, CPU {cpu / n * 1e6:,.0f} us/change"
    )


def print_threads(before: dict[str, float], after: dict[str, float], n: int) -> None:
    by_thread = {name: (t - before.get(name, 0.0)) / n * 1e6 for name, t in sorted(after.items())}
    print(
        "  by thread (us/change, 10 ms ticks): "
        + ", ".join(f"{name} {us:,.0f}" for name, us in by_thread.items() if us)
    )


async def main_async(args: argparse.Namespace) -> None:
    receiver = None
    args.receiver_url = "http://127.0.0.1:9"  # nothing listens: the worker is not started
    if args.deliver:
        from webhooks import free_port, start_receiver, wait_port  # bench/webhooks.py

        port = free_port()
        receiver = start_receiver("httptools", port)
        wait_port(port)
        args.receiver_url = f"http://127.0.0.1:{port}"
    try:
        async with bench_database(args.db) as url:
            await one_run(url, args)
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--orders", type=int, default=1)
    p.add_argument("--endpoints", type=int, default=1)
    p.add_argument("--layer", choices=["rest", "service"], default="rest")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--profile", metavar="FILE")
    p.add_argument("--world", choices=["notes", "rush"], default="notes")
    p.add_argument(
        "--deliver",
        action="store_true",
        help="--world rush: the delivery worker runs, POSTing to a local receiver "
        "(bench/webhooks.py's httptools one); timed until every message is delivered",
    )
    p.add_argument(
        "--rate", type=float, default=0, help="--world rush: changes per second (0: flat out)"
    )
    p.add_argument(
        "--bare",
        action="store_true",
        help="--world rush on SQLite: then the bare-driver loop (bench/rush/bare_writes.py) "
        "on the same database",
    )
    p.add_argument("--threads", action="store_true", help="also print CPU per change by thread")
    args = p.parse_args()
    import uvloop

    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
