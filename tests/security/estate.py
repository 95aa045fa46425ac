"""A small multi-tenant estate for the security tests, and attacker-side clients.

Two tenants x two locations; at every location one app of every kind (channel, pos, rider,
loyalty, kds), granted only that location; two users per tenant, each with an order at each
location of their tenant. Every order carries a unique secret marker in its note, consumer
phone and address, so a test can assert that no byte an attacker receives contains it.

Everything is real: the REST API in process (ASGI), the WebSocket gateway (Pusher and STOMP)
on a loopback port, raw ``websockets`` clients that sign their own subscriptions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from ordercast.app import create_app
from ordercast.domain.access import APP_KINDS
from ordercast.protocols.pusher import sign_channel
from ordercast.runtime import Runtime
from support.stomp import frame, parse, start_stomp

#: Where the estate lives (tests/security/conftest.py): "sqlite", "postgres" or "two-nodes".
BACKEND = os.environ.get("ORDERCAST_SECURITY_BACKEND", "sqlite")

TENANTS = ("t0", "t1")
LOCATIONS = ("l0", "l1")
USERS = ("u0", "u1")


def basic(key: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class App:
    name: str  # "t0/l0/channel"
    tenant: str  # estate name ("t0")
    location: str  # estate name ("l0")
    kind: str
    id: str
    key: str
    secret: str
    tenant_id: str
    location_id: str

    @property
    def auth(self) -> dict[str, str]:
        return basic(self.key, self.secret)


@dataclass(frozen=True)
class Order:
    name: str  # "t0/l0/u0"
    tenant: str
    location: str
    user: str
    id: str
    tenant_id: str
    location_id: str
    marker: str  # secret text inside the order: must never reach anyone else


@dataclass
class Estate:
    runtime: Runtime
    http: httpx.AsyncClient
    tenant_ids: dict[str, str] = field(default_factory=dict)
    location_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    apps: dict[tuple[str, str, str], App] = field(default_factory=dict)
    orders: dict[tuple[str, str, str], Order] = field(default_factory=dict)
    #: (tenant, location, user) -> an access token for that user minted by the channel app
    #: of that location.
    tokens: dict[tuple[str, str, str], str] = field(default_factory=dict)
    webhook_endpoints: dict[str, str] = field(default_factory=dict)  # app id -> endpoint id
    #: The node whose gateway the WebSocket attacks connect to (two nodes: not ``runtime``).
    sockets: Runtime | None = None

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.runtime.admin_token)

    def app(self, tenant: str, location: str, kind: str) -> App:
        return self.apps[(tenant, location, kind)]

    def order(self, tenant: str, location: str, user: str) -> Order:
        return self.orders[(tenant, location, user)]

    def markers(self) -> list[str]:
        return [o.marker for o in self.orders.values()]

    def ws_url(self, path: str) -> str:
        return (self.sockets or self.runtime).gateway.url(path)

    async def mint(self, app: App, user: str) -> str:
        r = await self.http.post(f"/v1/users/{user}/tokens", headers=app.auth)
        assert r.status_code == 201, r.text
        token: str = r.json()["access_token"]
        return token


async def build_estate(rt: Runtime) -> AsyncIterator[Estate]:
    await start_stomp(rt)
    if not rt.gateway.running:
        await rt.gateway.start(port=0)
    transport = httpx.ASGITransport(app=create_app(rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        estate = Estate(rt, http)
        admin = estate.admin
        for t in TENANTS:
            tenant = (await http.post("/v1/tenants", headers=admin, json={"name": t})).json()
            estate.tenant_ids[t] = tenant["id"]
            for loc in LOCATIONS:
                r = await http.post(
                    "/v1/locations",
                    headers=admin,
                    json={"tenant_id": tenant["id"], "name": f"{t}/{loc}", "timezone": "UTC"},
                )
                assert r.status_code == 201, r.text
                estate.location_ids[(t, loc)] = r.json()["id"]
                for kind in APP_KINDS:
                    r = await http.post(
                        "/v1/apps",
                        headers=admin,
                        json={
                            "tenant_id": tenant["id"],
                            "name": f"{t}/{loc}/{kind}",
                            "kind": kind,
                            "location_ids": [estate.location_ids[(t, loc)]],
                        },
                    )
                    assert r.status_code == 201, r.text
                    body = r.json()
                    estate.apps[(t, loc, kind)] = App(
                        f"{t}/{loc}/{kind}",
                        t,
                        loc,
                        kind,
                        body["id"],
                        body["key"],
                        body["secret"],
                        tenant["id"],
                        estate.location_ids[(t, loc)],
                    )
        for (t, loc), location_id in estate.location_ids.items():
            channel = estate.app(t, loc, "channel")
            for user in USERS:
                marker = f"SECRET-{t}-{loc}-{user}-{secrets.token_hex(6)}"
                r = await http.post(
                    "/v1/orders",
                    headers=channel.auth,
                    json={
                        "location_id": location_id,
                        "type": "delivery",
                        "user_id": user,
                        "items": [{"name": "Soup", "quantity": 1, "unit_price": 500}],
                        "consumer": {
                            "name": "Victim",
                            "phone": marker,
                            "address": {"line1": marker, "notes": f"gate code {marker}"},
                        },
                        "notes": marker,
                    },
                )
                assert r.status_code == 201, r.text
                oid = r.json()["id"]
                estate.orders[(t, loc, user)] = Order(
                    f"{t}/{loc}/{user}",
                    t,
                    loc,
                    user,
                    oid,
                    estate.tenant_ids[t],
                    location_id,
                    marker,
                )
                # A note: the Pusher order_tracker's text, kept in the last-state cache.
                r = await http.post(
                    f"/v1/orders/{oid}/notes",
                    headers=channel.auth,
                    json={"text": f"gate code {marker}, leave at door"},
                )
                assert r.status_code == 200, r.text
                estate.tokens[(t, loc, user)] = await estate.mint(channel, user)
        yield estate


# -- attacker-side clients -----------------------------------------------------------------


@dataclass
class Capture:
    """Every byte a client received, decoded as text frames."""

    frames: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.frames)

    def leaks(self, markers: list[str]) -> list[str]:
        text = self.text
        return [m for m in markers if m in text]


async def _drain(ws: Any, capture: Capture, quiet: float) -> None:
    """Read until nothing arrives for ``quiet`` seconds (or the socket closes)."""
    with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
        while True:
            data = await asyncio.wait_for(ws.recv(), quiet)
            capture.frames.append(data if isinstance(data, str) else data.decode("latin-1"))


async def pusher_subscribe(
    estate: Estate,
    app: App,
    channel: str,
    *,
    secret: str | None = None,
    quiet: float = 0.3,
    within: float = 5.0,
) -> tuple[dict[str, Any], Capture]:
    """Connect on ``app``'s key, sign ``channel`` with ``secret`` (default: the app's own),
    subscribe; the subscription outcome (``pusher_internal:subscription_succeeded`` or
    ``pusher:subscription_error``) and every frame received until ``quiet`` seconds of
    silence after it."""
    capture = Capture()
    url = estate.ws_url(f"/app/{app.key}?protocol=7&client=sec&version=1")
    async with websockets.connect(url, open_timeout=5, ping_interval=None) as ws:
        hello = await asyncio.wait_for(ws.recv(), within)
        capture.frames.append(str(hello))
        socket_id = json.loads(json.loads(hello)["data"])["socket_id"]
        data: dict[str, str] = {"channel": channel}
        channel_data = None
        if channel.startswith("presence-"):
            channel_data = data["channel_data"] = json.dumps({"user_id": "intruder"})
        data["auth"] = sign_channel(app.key, secret or app.secret, socket_id, channel, channel_data)
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))
        outcome: dict[str, Any] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not outcome:
            data = await asyncio.wait_for(ws.recv(), max(0.01, deadline - loop.time()))
            capture.frames.append(str(data))
            msg = json.loads(data)
            if msg.get("event") in (
                "pusher_internal:subscription_succeeded",
                "pusher:subscription_error",
            ):
                outcome = msg
        await _drain(ws, capture, quiet)
    return outcome, capture


@dataclass
class StompOutcome:
    connected: bool
    subscribed: bool  # RECEIPT for the SUBSCRIBE, no ERROR
    error: str | None
    capture: Capture


async def stomp_subscribe(
    estate: Estate,
    login: str,
    passcode: str | None,
    destination: str,
    *,
    then: Any = None,
    quiet: float = 0.3,
    within: float = 5.0,
    path: str = "/ws",
) -> StompOutcome:
    """CONNECT and SUBSCRIBE (with a receipt); ``then`` (an async callable) runs after the
    outcome is known, e.g. to change orders while the socket listens; then every frame
    until ``quiet`` seconds of silence."""
    capture = Capture()
    url = estate.ws_url(path)
    headers = {"accept-version": "1.2", "heart-beat": "0,0", "login": login}
    if passcode is not None:
        headers["passcode"] = passcode
    async with websockets.connect(
        url, open_timeout=5, ping_interval=None, subprotocols=["v12.stomp"]
    ) as ws:

        async def recv() -> str:
            data = await asyncio.wait_for(ws.recv(), within)
            text = data if isinstance(data, str) else data.decode("latin-1")
            capture.frames.append(text)
            return text

        await ws.send(frame("CONNECT", headers))
        first = parse((await recv()).encode("latin-1"))
        if first is None or first.command != "CONNECTED":
            await _drain(ws, capture, quiet)
            return StompOutcome(
                False, False, first.headers.get("message") if first else None, capture
            )
        await ws.send(frame("SUBSCRIBE", {"id": "s1", "destination": destination, "receipt": "r1"}))
        reply = parse((await recv()).encode("latin-1"))
        error = None
        subscribed = reply is not None and reply.command == "RECEIPT"
        if reply is not None and reply.command == "ERROR":
            error = reply.headers.get("message")
        if then is not None and subscribed:
            await then()
        await _drain(ws, capture, quiet)
        return StompOutcome(True, subscribed, error, capture)
