"""A real ordercast (HTTP API and WebSocket gateway, with STOMP) served from a thread with
its own event loop, for synchronous fuzzers (schemathesis calls with ``requests``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from ordercast.app import create_app
from ordercast.runtime import Runtime
from ordercast.settings import Settings

ADMIN = "admin-token-for-fuzzing"


@dataclass
class Served:
    http: str  # http://127.0.0.1:PORT
    ws: str  # ws://127.0.0.1:PORT
    admin: dict[str, str]
    app: dict[str, Any]  # id, key, secret, tenant_id, location_id
    order_id: str
    token: str  # a user access token for the order's user


@contextlib.contextmanager
def served(database_url: str) -> Iterator[Served]:
    ready = threading.Event()
    stop = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        rt = await Runtime.open(Settings(database_url=database_url, admin_token=ADMIN))
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(rt), host="127.0.0.1", port=0, log_level="error", lifespan="off"
            )
        )
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await rt.gateway.start(host="127.0.0.1", port=0)
            box["http"] = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
            box["ws"] = rt.gateway.url()
            ready.set()
            while not stop.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        finally:
            await rt.gateway.stop()
            server.should_exit = True
            await task
            await rt.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the test
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="served-ordercast", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=box["http"], timeout=10) as c:
        tenant = c.post("/v1/tenants", headers=admin, json={"name": "F"}).json()
        loc = c.post(
            "/v1/locations", headers=admin, json={"tenant_id": tenant["id"], "name": "L"}
        ).json()
        app = c.post(
            "/v1/apps",
            headers=admin,
            json={
                "tenant_id": tenant["id"],
                "name": "A",
                "kind": "channel",
                "location_ids": [loc["id"]],
            },
        ).json()
        auth = (app["key"], app["secret"])
        order = c.post(
            "/v1/orders",
            auth=auth,
            json={
                "location_id": loc["id"],
                "user_id": "u0",
                "items": [{"name": "a", "quantity": 1, "unit_price": 1}],
            },
        ).json()
        token = c.post("/v1/users/u0/tokens", auth=auth).json()["access_token"]
    try:
        yield Served(
            box["http"],
            box["ws"],
            admin,
            {**app, "tenant_id": tenant["id"], "location_id": loc["id"]},
            order["id"],
            token,
        )
    finally:
        stop.set()
        thread.join(30)
