"""CPU per request of ordercast's ASGI app called directly: no HTTP server and no client, so
the figure is the app's own (middleware, routing, auth, validation, the command and its
write, the response), which bench/writes.py's REST layer mixes with httpx's client.

    PYTHONPATH=src .venv/bin/python bench/asgi_requests.py --kind note --n 3000

``--kind``: ``note`` (POST /v1/orders/{id}/notes, a command route), ``courier`` (POST
/v1/deliveries/{id}/status, a FastAPI route), ``get`` (GET /v1/orders/{id}) or ``404``.
One SQLite tenant, location and channel app (no webhook endpoints), 50 orders in turn.
Prints the process's CPU time per request (all threads: the SQLite writer's included);
``--profile FILE`` writes a cProfile of the timed requests (the event loop's thread).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import tempfile
import time
from typing import Any

ADMIN = "bench-admin-token-asgi"
ITEM = {"pos_id": "b", "name": "B", "quantity": 1, "unit_price": 100}


async def run(args: argparse.Namespace) -> None:
    import httpx

    from ordercast.app import create_app
    from ordercast.runtime import Runtime
    from ordercast.settings import Settings

    folder = tempfile.mkdtemp(prefix="ordercast-asgi-")
    rt = await Runtime.open(
        Settings(
            database_url=f"sqlite:///{folder}/bench.db", admin_token=ADMIN, log_level="warning"
        )
    )
    app = create_app(rt)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            admin = {"Authorization": f"Bearer {ADMIN}"}
            tenant = (await http.post("/v1/tenants", headers=admin, json={"name": "T"})).json()
            loc = (
                await http.post(
                    "/v1/locations",
                    headers=admin,
                    json={"tenant_id": tenant["id"], "name": "L", "timezone": "UTC"},
                )
            ).json()
            body = {
                "tenant_id": tenant["id"],
                "name": "c",
                "kind": "channel",
                "location_ids": [loc["id"]],
            }
            channel = (await http.post("/v1/apps", headers=admin, json=body)).json()
            token = base64.b64encode(f"{channel['key']}:{channel['secret']}".encode()).decode()
            auth = f"Basic {token}"
            orders, deliveries = [], []
            for _ in range(50):
                order = {"location_id": loc["id"], "type": "pickup", "items": [ITEM]}
                r = await http.post("/v1/orders", headers={"Authorization": auth}, json=order)
                oid = r.json()["id"]
                orders.append(oid)
                if args.kind == "courier":
                    await http.post(
                        f"/v1/orders/{oid}/transitions",
                        headers={"Authorization": auth},
                        json={"to": "accepted"},
                    )
                    r = await http.post(
                        f"/v1/orders/{oid}/deliveries",
                        headers={"Authorization": auth},
                        json={"provider": "p"},
                    )
                    deliveries.append(r.json()["id"])
        # Courier statuses that can follow one another forever (a location update).
        statuses: dict[int, int] = {}

        def request(i: int) -> tuple[str, str, bytes]:
            if args.kind == "note":
                return "POST", f"/v1/orders/{orders[i % 50]}/notes", b'{"text":"n"}'
            if args.kind == "courier":
                path = f"/v1/deliveries/{deliveries[i % 50]}/status"
                return "POST", path, b'{"location":{"lat":1.0,"lng":2.0}}'
            if args.kind == "get":
                return "GET", f"/v1/orders/{orders[i % 50]}", b""
            return "GET", "/v1/nothing-here", b""

        async def one(i: int) -> None:
            method, path, body_bytes = request(i)
            scope: dict[str, Any] = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1",
                "method": method,
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "query_string": b"",
                "root_path": "",
                "headers": [
                    (b"host", b"bench"),
                    (b"authorization", auth.encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body_bytes)).encode()),
                ],
                "client": ("127.0.0.1", 50000),
                "server": ("127.0.0.1", 80),
                "state": {},
            }
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body_bytes, "more_body": False}
                await asyncio.Event().wait()  # the client never disconnects
                raise AssertionError

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] = statuses.get(message["status"], 0) + 1

            await app(scope, receive, send)

        for i in range(100):  # warm-up
            await one(i)
        statuses.clear()
        prof = cProfile.Profile() if args.profile else None
        if prof is not None:
            prof.enable()
        cpu0 = time.process_time()
        for i in range(args.n):
            await one(i)
        cpu = time.process_time() - cpu0
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile)
        print(
            f"{args.kind}: {args.n} requests, {cpu / args.n * 1e6:,.0f} us CPU per request "
            f"(process, all threads); statuses {statuses}"
        )
    finally:
        await rt.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kind", choices=["note", "courier", "get", "404"], default="note")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--profile", metavar="FILE")
    args = p.parse_args()
    import uvloop

    uvloop.run(run(args))


if __name__ == "__main__":
    main()
