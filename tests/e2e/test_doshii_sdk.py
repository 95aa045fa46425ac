"""The unmodified ``doshii-partner-node-sdk`` (npm, exact version in tests/node/package.json)
against a live ``ordercast run``: REST, webhooks and the partner socket, and the fan-out both
ways (a change through ordercast's own API reaches the SDK's socket; a Doshii PUT reaches a
Pusher ``private-o-`` channel and a STOMP ``/kds`` destination), for several orders.

The SDK runs in tests/node/doshii_driver.mjs (JSON lines in, JSON lines out), which only
calls the SDK's public methods. Every wait is bounded polling; no sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from support.doshii import doshii_jwt
from support.live import ADMIN, Ordercast
from support.paths import NODE_DIR, ROOT
from support.stomp import raw_client
from support.webhooks import Receiver

pytestmark = pytest.mark.node


def need_sdk() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (make test installs the Node clients)")
    if not (NODE_DIR / "node_modules" / "doshii-partner-node-sdk").is_dir():
        pytest.skip("tests/node/node_modules is missing: run `make node`")


async def until(check: Callable[[], Any], what: str, within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@dataclass
class Sdk:
    """One doshii_driver.mjs process: commands in, events collected as they come."""

    proc: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    _ids: int = 0
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, **init: Any) -> Sdk:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / "doshii_driver.mjs"),
            cwd=str(NODE_DIR),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        sdk = cls(proc)
        sdk._reader = asyncio.create_task(sdk._read())
        sdk.send({"op": "init", **init})
        await until(lambda: sdk.find(ev="ready"), "the SDK driver")
        return sdk

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())

    def find(self, **match: Any) -> list[dict[str, Any]]:
        fatal = [e for e in self.events if e.get("ev") == "fatal"]
        assert not fatal, fatal
        return [e for e in self.events if all(e.get(k) == v for k, v in match.items())]

    async def call(self, method: str, *args: Any) -> dict[str, Any]:
        """The SDK call's outcome: ``{"ev": "result", "value"}`` or ``{"ev": "error", …}``."""
        self._ids += 1
        cid = f"c{self._ids}"
        self.send({"op": "call", "id": cid, "method": method, "args": list(args)})
        found: list[dict[str, Any]] = await until(lambda: self.find(id=cid), method)
        return found[0]

    async def ok(self, method: str, *args: Any) -> Any:
        out = await self.call(method, *args)
        assert out["ev"] == "result", out
        return out["value"]

    def emits(self, event: str, order_id: str | None = None) -> list[dict[str, Any]]:
        return [
            e["data"]
            for e in self.find(ev="ws", event=event)
            if order_id is None or e["data"].get("id") == order_id
        ]

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@dataclass
class World:
    oc: Ordercast
    http: httpx.AsyncClient
    tenant_id: str
    location_id: str
    partner: dict[str, Any]
    pos: dict[str, Any]
    opted_in: dict[str, Any]

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.oc.ws_port}"

    def sdk_options(self, app: dict[str, Any], auth: str) -> dict[str, Any]:
        return {
            "clientId": app["key"],
            "clientSecret": app["secret"],
            "apiUrl": f"{self.oc.base}/partner/v3",
            "wsUrl": f"{self.ws}/app/socket?auth={auth}&client=",
            "pingInterval": 60_000,
        }

    def pos_auth(self) -> tuple[str, str]:
        return (self.pos["key"], self.pos["secret"])

    async def move(self, order_id: str, to: str) -> dict[str, Any]:
        r = await self.http.post(
            f"/v1/orders/{order_id}/transitions", auth=self.pos_auth(), json={"to": to}
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@contextlib.asynccontextmanager
async def running(tmp: Path, database_url: str = "") -> AsyncIterator[World]:
    oc = Ordercast(database_url or f"sqlite:///{tmp}/ordercast.db", tmp / "ordercast.log")
    oc.start()
    http = httpx.AsyncClient(base_url=oc.base, timeout=10)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    try:
        tenant = (await http.post("/v1/tenants", headers=admin, json={"name": "T"})).json()
        location = (
            await http.post(
                "/v1/locations",
                headers=admin,
                json={"tenant_id": tenant["id"], "name": "Cafe", "timezone": "UTC"},
            )
        ).json()

        async def app(kind: str, **settings: Any) -> dict[str, Any]:
            r = await http.post(
                "/v1/apps",
                headers=admin,
                json={
                    "tenant_id": tenant["id"],
                    "name": kind,
                    "kind": kind,
                    "location_ids": [location["id"]],
                    "settings": settings,
                },
            )
            assert r.status_code == 201, r.text
            body: dict[str, Any] = r.json()
            return body

        partner, pos = await app("channel"), await app("pos")
        opted_in = await app("channel", doshii_socket_client_id_auth=True)
        yield World(oc, http, tenant["id"], location["id"], partner, pos, opted_in)
    finally:
        await http.aclose()
        oc.stop()


def create_body(ref: str) -> dict[str, Any]:
    return {
        "order": {
            "type": "pickup",
            "status": "pending",
            "externalOrderRef": ref,
            "items": [
                {
                    "posId": "flat-white",
                    "name": "Flat White",
                    "quantity": 2,
                    "unitPrice": "450",
                    "options": [
                        {
                            "posId": "milk",
                            "name": "Milk",
                            "variants": [{"name": "Oat", "price": 70}],
                        }
                    ],
                    "surcounts": [],
                }
            ],
            "surcounts": [],
        },
        "consumer": {"name": "Tony T", "phone": "01234567890"},
    }


async def test_sdk_rest_webhooks_and_socket_against_a_live_ordercast(
    tmp_path: Path, database_url: str
) -> None:
    need_sdk()
    hooks = Receiver()
    await hooks.start()
    async with running(tmp_path, database_url) as w:
        p = w.partner
        sdk = await Sdk.start(**w.sdk_options(p, doshii_jwt(p["key"], p["secret"])))
        try:
            loc = w.location_id
            # Webhooks the Doshii way: Basic key:token for one event, Bearer token for the other.
            made = await sdk.ok(
                "webhook.registerWebhook",
                {
                    "event": "order_updated",
                    "webhookUrl": hooks.url,
                    "authenticationKey": "partner-key",
                    "authenticationToken": "partner-token",
                },
                loc,
            )
            assert made["event"] == "order_updated" and made["authenticationEnabled"] is True
            await sdk.ok(
                "webhook.registerWebhook",
                {"event": "order_created", "webhookUrl": hooks.url, "authenticationToken": "tok"},
            )
            listed = await sdk.ok("webhook.getAll")
            assert sorted(h["event"] for h in listed) == ["order_created", "order_updated"]
            assert (await sdk.ok("webhook.getOne", "order_updated"))["webhookUrl"] == hooks.url

            # The socket: ping → pong, then only emits.
            sdk.send({"op": "listen", "events": ["pong", "order_created", "order_updated"]})
            pong = await until(lambda: sdk.find(ev="ws", event="pong"), "pong")
            assert isinstance(pong[0]["data"]["doshii"]["pong"], int)

            orders = [
                await sdk.ok("order.createOrder", loc, create_body(f"R{i}")) for i in range(3)
            ]
            ids = [o["id"] for o in orders]
            assert [o["status"] for o in orders] == ["pending"] * 3
            assert orders[0]["items"][0]["totalBeforeSurcounts"] == 2 * (450 + 70)
            for oid in ids:
                await until(lambda oid=oid: sdk.emits("order_created", oid), f"created {oid}")

            one = await sdk.ok("order.getOne", loc, ids[0])
            assert one["id"] == ids[0] and one["version"] == orders[0]["version"]
            page = await sdk.ok("order.getAll", loc, {"status": ["pending"], "limit": 2})
            assert page["count"] == 3 and page["limit"] == 2 and len(page["rows"]) == 2
            assert [r["id"] for r in page["rows"]] == [ids[2], ids[1]]
            by_ref = await sdk.ok("order.getAll", loc, {"externalOrderRef": "R1"})
            assert [r["id"] for r in by_ref["rows"]] == [ids[1]]
            since = {"$date": (time.time() + 3600) * 1000}
            assert (await sdk.ok("order.getAll", loc, {"from": since}))["count"] == 0

            # Update with the current version; the old one is now stale (409, nothing changes).
            a = orders[0]
            accepted = await sdk.ok(
                "order.update", loc, a["id"], {"status": "accepted", "version": a["version"]}
            )
            assert accepted["status"] == "accepted" and accepted["version"] != a["version"]
            stale = await sdk.call(
                "order.update", loc, a["id"], {"status": "complete", "version": a["version"]}
            )
            assert stale["ev"] == "error" and stale["status"] == 409
            assert stale["data"]["code"] == "stale_version"
            assert (await sdk.ok("order.getOne", loc, a["id"]))["status"] == "accepted"

            # A change through ordercast's own API (the POS app) reaches the SDK's socket.
            await w.move(ids[1], "accepted")
            emitted = await until(lambda: sdk.emits("order_updated", ids[1]), "order_updated")
            assert emitted[-1]["status"] == "accepted"
            assert emitted[-1]["version"] == (await sdk.ok("order.getOne", loc, ids[1]))["version"]

            # Unsubscribed: the next change of that order is not emitted (nor webhooked);
            # subscribed again: it is. (Changes reach the socket in commit order, so the
            # emit for ids[1] after it proves the one for ids[2] was not just late.)
            gone = await sdk.ok("order.unsubscribeFrom", loc, ids[2])
            assert "unsubscribed" in gone["message"]
            await w.move(ids[2], "accepted")
            await w.move(ids[1], "preparing")
            await until(lambda: len(sdk.emits("order_updated", ids[1])) >= 2, "second update")
            assert sdk.emits("order_updated", ids[2]) == []
            again = await sdk.ok("order.subscribeTo", loc, ids[2])
            assert again["id"] == ids[2] and again["status"] == "accepted"
            await w.move(ids[2], "completed")
            done = await until(lambda: sdk.emits("order_updated", ids[2]), "resubscribed emit")
            assert done[-1]["status"] == "complete"

            # Webhooks: each with the partner's own authentication, as Doshii sends it.
            basic = "Basic " + base64.b64encode(b"partner-key:partner-token").decode()

            def webhooks(kind: str, oid: str) -> list[dict[str, Any]]:
                return [
                    r.json["data"]
                    for r in hooks.received
                    if r.json["type"] == kind and r.json["data"]["id"] == oid
                ]

            await until(lambda: len(webhooks("order_updated", ids[2])) >= 1, "webhook", 20)
            await until(lambda: len(webhooks("order_updated", ids[1])) >= 2, "webhooks", 20)
            await until(lambda: webhooks("order_updated", a["id"]), "webhook for the PUT", 20)
            for r in hooks.received:
                expected = basic if r.json["type"] == "order_updated" else "Bearer tok"
                assert r.headers["authorization"] == expected, r.headers
                assert r.headers["webhook-signature"].startswith("v1,")
            assert {
                d["id"]
                for d in [
                    r.json["data"] for r in hooks.received if r.json["type"] == "order_created"
                ]
            } == set(ids)
            # The unsubscribed change of ids[2] (to accepted) was never sent.
            assert [d["status"] for d in webhooks("order_updated", ids[2])] == ["complete"]

            logs = await sdk.ok("order.getAll", loc, {"status": ["complete"]})
            assert [r["id"] for r in logs["rows"]] == [ids[2]]
            gone = await sdk.ok("webhook.unregisterWebhook", "order_created")
            assert gone["message"]
            assert [h["event"] for h in await sdk.ok("webhook.getAll")] == ["order_updated"]
        finally:
            await sdk.close()
            await hooks.stop()


async def pusher_subscribe(w: World, channel: str) -> websockets.ClientConnection:
    key, secret = w.pos["key"], w.pos["secret"]
    ws = await websockets.connect(f"{w.ws}/app/{key}?protocol=7&client=py&version=8.4.0")
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    socket_id = json.loads(hello["data"])["socket_id"]
    r = await w.http.post(
        "/api/v1/pusher/auth",
        params={"key": key, "secret": secret},
        data={"socket_id": socket_id, "channel_name": channel},
    )
    assert r.status_code == 200, r.text
    sub = {"channel": channel, "auth": r.json()["auth"]}
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": sub}))
    ok = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ok["event"] == "pusher_internal:subscription_succeeded", ok
    return ws


async def test_doshii_put_reaches_pusher_and_stomp_for_several_orders(tmp_path: Path) -> None:
    need_sdk()
    async with running(tmp_path) as w:
        p = w.partner
        sdk = await Sdk.start(**w.sdk_options(p, doshii_jwt(p["key"], p["secret"])))
        kds = f"/kds/{w.tenant_id}/{w.location_id}"
        try:
            loc = w.location_id
            orders = [
                await sdk.ok("order.createOrder", loc, create_body(f"K{i}")) for i in range(3)
            ]
            channels = [await pusher_subscribe(w, f"private-o-{o['id']}") for o in orders]
            async with raw_client(f"{w.ws}/ws", ["v12.stomp"]) as stomp:
                assert (await stomp.connect(w.pos["key"], w.pos["secret"])).command == "CONNECTED"
                assert (await stomp.subscribe(kds)).command == "RECEIPT"
                for o in orders:
                    await sdk.ok(
                        "order.update",
                        loc,
                        o["id"],
                        {"status": "accepted", "version": o["version"]},
                    )
                # STOMP /kds: each order's change, in the Ordering Stack shape, seq 2.
                seen: dict[str, dict[str, str]] = {}
                while len(seen) < len(orders):
                    frame = await stomp.expect("MESSAGE")
                    body = json.loads(frame.body)
                    if frame.headers.get("event-type") == "order.accepted":
                        seen[body["id"]] = frame.headers
                assert set(seen) == {o["id"] for o in orders}
                # Pusher private-o-{id}: Open Dining's confirmation with that order's seq.
                for o, ws in zip(orders, channels, strict=True):
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    while msg["event"].startswith("pusher"):
                        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    assert msg["channel"] == f"private-o-{o['id']}"
                    data = json.loads(msg["data"]) if isinstance(msg["data"], str) else msg["data"]
                    assert data["order_id"] == o["id"] and data["seq"] == 2, msg
            for ws in channels:
                await ws.close()
        finally:
            await sdk.close()


async def test_socket_auth_opt_in_and_refusals(tmp_path: Path) -> None:
    need_sdk()
    async with running(tmp_path) as w:
        # The SDK's own auth=base64(clientId) works for the app that opted in…
        opted = w.opted_in
        sdk = await Sdk.start(**{**w.sdk_options(opted, ""), "wsUrl": f"{w.ws}/app/socket?auth="})
        try:
            sdk.send({"op": "listen", "events": ["pong", "order_created"]})
            await until(lambda: sdk.find(ev="ws", event="pong"), "pong for the opted-in app")
            made = await sdk.ok("order.createOrder", w.location_id, create_body("O1"))
            await until(lambda: sdk.emits("order_created", made["id"]), "emit")
        finally:
            await sdk.close()
        # …and is refused, with a close reason and no other frame, for any other app.
        p = w.partner
        cases = {
            base64.b64encode(p["key"].encode()).decode(): "doshii_socket_client_id_auth",
            jwt.encode(
                {"clientId": p["key"], "timestamp": round(time.time())}, "x" * 40
            ): "signature",
            jwt.encode(
                {"clientId": p["key"], "timestamp": round(time.time()) - 900}, p["secret"]
            ): "300 s",
            "%%%": "neither a JWT",
            "": "missing auth",
        }
        for auth, reason in cases.items():
            async with websockets.connect(f"{w.ws}/app/socket?auth={auth}") as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1008 and reason in closed.value.rcvd.reason
        # Bad input after authentication: a close with a reason, never a Pusher frame.
        good = doshii_jwt(p["key"], p["secret"])
        for frame, code in (("hello", 1007), ('{"event":"pusher:ping"}', 1007), (b"\x00", 1003)):
            async with websockets.connect(f"{w.ws}/app/socket?auth={good}") as ws:
                await ws.send('{"doshii":{"ping":1}}')
                assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"doshii": {"pong": 1}}
                await ws.send(frame)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == code
                assert closed.value.rcvd.reason


async def test_readme_snippet_runs(tmp_path: Path) -> None:
    """README's "Doshii partners" example, run as written against a live ordercast."""
    need_sdk()

    async def main() -> str:
        async with running(tmp_path) as w:
            env = {
                **os.environ,
                "OC_URL": w.oc.base,
                "OC_WS": w.ws,
                "OC_KEY": w.partner["key"],
                "OC_SECRET": w.partner["secret"],
                "OC_LOCATION": w.location_id,
            }
            proc = await asyncio.create_subprocess_exec(
                "node",
                "examples/doshii_partner.mjs",
                cwd=str(NODE_DIR),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            lines: list[str] = []
            assert proc.stdout is not None
            try:
                deadline = time.monotonic() + 20
                # The socket's emit may come before the update's HTTP answer is printed.
                while not (
                    any(x.startswith("order_updated") for x in lines)
                    and any(x.startswith("accepted ") for x in lines)
                ):
                    line = await asyncio.wait_for(
                        proc.stdout.readline(), deadline - time.monotonic()
                    )
                    assert line, "\n".join(lines)
                    lines.append(line.decode().strip())
            finally:
                proc.kill()
                await proc.wait()
            return "\n".join(lines)

    out = await main()
    assert "pong" in out
    created = next(x for x in out.splitlines() if x.startswith("created "))
    oid = created.split()[1]
    assert created.split()[2] == "pending"
    assert f"order_created {oid} pending" in out
    assert f"accepted {oid} accepted" in out
    assert f"order_updated {oid} accepted" in out


def test_readme_shows_the_doshii_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    assert (NODE_DIR / "examples" / "doshii_partner.mjs").read_text() in readme
