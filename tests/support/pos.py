"""The POS flow's counterparts on loopback, for tests against a live ``ordercast run``
(:class:`support.live.Ordercast`): a simulated POS that verifies ordercast's signed webhooks
and calls back as its app following a per-order script, the ordering channel's own receiver,
and :func:`provision` / :func:`running`, which wire them to a tenant, a location and apps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from standardwebhooks import Webhook

from support.live import ADMIN, Ordercast
from support.net import free_port
from support.webhooks import wait_for
from support.world import basic

# Answer scripts: callback kind -> how the POS answers. ("PRICED", total), ("ERROR", code),
# "silent" (acknowledge the webhook, never call back).
Script = dict[str, Any]


@dataclass
class SimulatedPos:
    """A POS on loopback: verifies, acknowledges, then calls back as its app."""

    secret: str = ""
    key: str = ""
    app_secret: str = ""
    scripts: dict[str, Script] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    received: list[dict[str, Any]] = field(default_factory=list)  # verified bodies + id
    callbacks: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rbi"

    def of(self, order_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.received
            if r["body"].get("orderId") == order_id
            and (event_type is None or r["body"]["eventType"] == event_type)
        ]

    def distinct(self, order_id: str, event_type: str) -> int:
        return len({r["webhook_id"] for r in self.of(order_id, event_type)})

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            Webhook(self.secret).verify(raw, headers)
        except Exception as exc:  # a bad signature is refused, and fails the test later
            self.received.append({"bad_signature": repr(exc), "body": {}, "webhook_id": ""})
            return web.json_response({"error": "bad signature"}, status=401)
        body = json.loads(raw)
        self.received.append({"body": body, "webhook_id": headers["webhook-id"]})
        kind = {"PRICE_ORDER": "price", "COMMIT_ORDER": "commit", "FIRE_ORDER": "fire"}.get(
            body["eventType"]
        )
        if kind is not None:
            script = self.scripts.get(str(body["order"].get("externalReferenceId")), {})
            answer = script.get(kind, "ok")
            if answer != "silent":
                task = asyncio.create_task(self._call_back(body["callbackUrl"], kind, answer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return web.json_response({"received": True})

    async def _call_back(self, url: str, kind: str, answer: Any) -> None:
        success = {"price": "PRICED", "commit": "COMMITTED", "fire": "PREPARING"}[kind]
        if answer == "ok":
            payload: dict[str, Any] = {"status": success}
        elif answer[0] == "ERROR":
            payload = {"status": "ERROR", "errors": [{"code": answer[1], "message": answer[2]}]}
        else:
            payload = {"status": answer[0], "total": answer[1]}
        assert self._session is not None
        auth = basic(self.key, self.app_secret)
        async with self._session.post(url, json=payload, headers=auth) as response:
            self.callbacks.append((url, response.status, await response.json()))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/rbi", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Channel:
    """The ordering channel's own webhook receiver (ordercast dialect)."""

    port: int = field(default_factory=free_port)
    received: list[dict[str, Any]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(json.loads(await request.read()))
        return web.json_response({})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Setup:
    oc: Ordercast
    http: httpx.AsyncClient
    pos: SimulatedPos
    channel: Channel
    location_id: str
    channel_auth: dict[str, str]
    pos_auth: dict[str, str]
    other_auth: dict[str, str]
    counter: int = 0

    async def order(self, script: Script | None = None, **body: Any) -> dict[str, Any]:
        self.counter += 1
        ref = f"ref-{self.counter}-{time.monotonic_ns()}"
        self.pos.scripts[ref] = script or {}
        spec = {
            "location_id": self.location_id,
            "type": "pickup",
            "external_order_ref": ref,
            "items": [{"pos_id": "whopper", "name": "Whopper", "quantity": 2, "unit_price": 699}],
            "consumer": {"name": "Ada"},
            **body,
        }
        r = await self.http.post("/v1/orders", headers=self.channel_auth, json=spec)
        assert r.status_code == 201, r.text
        order: dict[str, Any] = r.json()
        return order

    async def get(self, order_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/v1/orders/{order_id}", headers=self.channel_auth)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    async def wait_status(self, order_id: str, status: str, limit: float = 30) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def reached() -> bool:
            seen.update(await self.get(order_id))
            return bool(seen["status"] == status)

        try:
            await wait_for(reached, limit, f"order {order_id} to reach {status}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen {seen.get('status')}: {seen}") from None
        return seen

    async def events(self, order_id: str) -> list[dict[str, Any]]:
        r = await self.http.get(f"/v1/orders/{order_id}/events", headers=self.channel_auth)
        events: list[dict[str, Any]] = r.json()["events"]
        return events


async def provision(oc: Ordercast, pos: SimulatedPos, channel: Channel) -> Setup:
    http = httpx.AsyncClient(base_url=oc.base, timeout=10)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    tenant = (await http.post("/v1/tenants", headers=admin, json={"name": "BK"})).json()
    location = (
        await http.post(
            "/v1/locations",
            headers=admin,
            json={"tenant_id": tenant["id"], "name": "BK 1", "timezone": "UTC"},
        )
    ).json()

    async def app(kind: str) -> dict[str, Any]:
        r = await http.post(
            "/v1/apps",
            headers=admin,
            json={
                "tenant_id": tenant["id"],
                "name": kind,
                "kind": kind,
                "location_ids": [location["id"]],
            },
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    pos_app, channel_app, rider_app = await app("pos"), await app("channel"), await app("rider")
    r = await http.post(
        f"/v1/apps/{pos_app['id']}/endpoints",
        headers=admin,
        json={"url": pos.url, "dialect": "rbi"},
    )
    assert r.status_code == 201, r.text
    pos.secret = r.json()["secret"]
    pos.key, pos.app_secret = pos_app["key"], pos_app["secret"]
    r = await http.post(
        f"/v1/apps/{channel_app['id']}/endpoints",
        headers=admin,
        json={"url": f"http://127.0.0.1:{channel.port}/hook", "dialect": "ordercast"},
    )
    assert r.status_code == 201, r.text
    return Setup(
        oc,
        http,
        pos,
        channel,
        location["id"],
        basic(channel_app["key"], channel_app["secret"]),
        basic(pos_app["key"], pos_app["secret"]),
        basic(rider_app["key"], rider_app["secret"]),
    )


@contextlib.asynccontextmanager
async def running(tmp: Path, database_url: str = "", **env: str) -> AsyncIterator[Setup]:
    pos, channel = SimulatedPos(), Channel()
    await pos.start()
    await channel.start()
    oc = Ordercast(database_url or f"sqlite:///{tmp}/ordercast.db", tmp / "ordercast.log", **env)
    oc.start()
    setup = await provision(oc, pos, channel)
    try:
        yield setup
    finally:
        await setup.http.aclose()
        oc.stop()
        await pos.stop()
        await channel.stop()
        assert not [r for r in pos.received if "bad_signature" in r], "a webhook did not verify"
