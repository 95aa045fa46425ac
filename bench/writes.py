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
cProfile of the timed loop.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import statistics
import time

from _db import bench_database  # bench/_db.py (these scripts run with bench/ on sys.path)


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
            await asyncio.gather(*(writer(c) for c in range(args.concurrency)))
            cpu = time.process_time() - cpu0
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
    finally:
        await rt.close()


async def main_async(args: argparse.Namespace) -> None:
    async with bench_database(args.db) as url:
        await one_run(url, args)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--orders", type=int, default=1)
    p.add_argument("--endpoints", type=int, default=1)
    p.add_argument("--layer", choices=["rest", "service"], default="rest")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--profile", metavar="FILE")
    args = p.parse_args()
    import uvloop

    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
