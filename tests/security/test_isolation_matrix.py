"""The isolation matrix (issue 12): every way in, generated from the code, attacked from
another tenant, another location and other users; every attempt refused, no byte of the
victim's orders received.

The victim: tenant t0, location l0, user u0 (its order, location, channel app, webhook
endpoint and courier job). The attackers (``security/estate.py``): the 10 apps of tenant t1
(every kind, both locations) and the 5 apps of t0's other location, and user tokens — t0's
u1 (another customer of the same location), t0's u0 minted by the l1 channel app (the
victim's user id, without the grant), t1's u0 (the same user id in another tenant).

Refusals: another tenant's object reads exactly as a nonexistent one (same status, 404,
or the route's role refusal); inside the tenant 403. Every byte an attacker receives is
searched for every secret marker of the victim's orders.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import websockets

from ordercast.app import create_app
from ordercast.dialects import orderingstack
from ordercast.gateway.pusher.orders import GUARDED_PREFIXES
from ordercast.protocols.pusher.httpapi import body_md5, string_to_sign
from security.estate import (
    App,
    Capture,
    Estate,
    Order,
    _drain,
    bearer,
    pusher_subscribe,
    stomp_subscribe,
)
from security.matrix import (
    GATEWAY_ROUTES,
    PUSHER_CHANNELS,
    ROUTES,
    STOMP_DESTINATIONS,
    STOMP_SILENT,
    Entry,
)
from support.doshii import doshii_jwt
from support.pusher import serve_http

HINT = "add an entry for it in tests/security/matrix.py (see the kinds in its docstring)"


def rest_routes() -> list[str]:
    """Every ``METHOD /path`` the HTTP app serves, from FastAPI's route table."""
    out: list[str] = []

    def walk(routes: Any) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes)
                continue
            methods = getattr(route, "methods", None) or {"WS"}
            out.extend(f"{m} {route.path}" for m in sorted(methods - {"HEAD"}))

    walk(create_app().router.routes)
    return out


def test_every_way_in_has_an_entry(estate: Estate) -> None:
    missing = [r for r in rest_routes() if r not in ROUTES]
    assert not missing, f"routes without an isolation-matrix entry: {missing}; {HINT}"
    stale = [r for r in ROUTES if r not in rest_routes()]
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"
    gateway = estate.runtime.gateway.route_names()
    missing = [r for r in gateway if r not in GATEWAY_ROUTES]
    assert not missing, f"WebSocket routes without an entry in GATEWAY_ROUTES: {missing}; {HINT}"
    missing = [p for p in orderingstack.PREFIXES if p not in STOMP_DESTINATIONS]
    assert not missing, f"STOMP prefixes without STOMP_DESTINATIONS: {missing}; {HINT}"
    missing = [p for p in GUARDED_PREFIXES if p not in PUSHER_CHANNELS]
    assert not missing, f"Pusher channel prefixes without PUSHER_CHANNELS: {missing}; {HINT}"


# -- the victim and the attackers ------------------------------------------------------------


@dataclass(frozen=True)
class Attacker:
    name: str
    scope: str  # "tenant" (another tenant) or "inside" (same tenant, not granted / not theirs)
    headers: dict[str, str]
    app: App | None = None  # an app attacker
    token: str | None = None  # a user attacker's access token
    issuer: App | None = None  # the app that minted a user attacker's token
    #: A customer of the victim's location (another user): the location itself is theirs
    #: to see (its name and timezone), the victim's order is not.
    at_victim_location: bool = False
    user: str | None = None

    def may_see(self, order: Order) -> bool:
        """The orders this attacker legitimately sees (its own location's, or its own)."""
        owner = self.app or self.issuer
        assert owner is not None
        same_place = (order.tenant, order.location) == (owner.tenant, owner.location)
        return same_place and (self.app is not None or order.user == self.user)


async def attackers(estate: Estate) -> list[Attacker]:
    out = [
        Attacker(a.name, "tenant" if a.tenant == "t1" else "inside", a.auth, app=a)
        for a in estate.apps.values()
        if a.tenant == "t1" or a.location == "l1"
    ]
    users = [
        ("t0/l0/u1 token", "inside", estate.app("t0", "l0", "channel"), "u1"),
        ("t0/u0 token minted by l1", "inside", estate.app("t0", "l1", "channel"), "u0"),
        ("t1/u0 token", "tenant", estate.app("t1", "l0", "channel"), "u0"),
    ]
    for name, scope, issuer, user in users:
        token = await estate.mint(issuer, user)
        here = (issuer.tenant, issuer.location) == ("t0", "l0")
        out.append(Attacker(name, scope, bearer(token), None, token, issuer, here, user))
    return out


@dataclass
class Victim:
    tenant_id: str
    location_id: str
    user: str
    order_id: str
    app_id: str
    endpoint_id: str
    delivery_id: str

    def fill(self, text: str, **extra: str) -> str:
        values = {
            "tenant_id": self.tenant_id,
            "location_id": self.location_id,
            "user": self.user,
            "user_id": self.user,
            "order_id": self.order_id,
            "app_id": self.app_id,
            "endpoint_id": self.endpoint_id,
            "delivery_id": self.delivery_id,
            "channel_name": f"private-o-{self.order_id}",
            "event": "order_updated",
            "venue": self.location_id,
            "account_id": "acc_x",
            "path:path": "nothing-here",
            **extra,
        }
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text

    def nonexistent(self) -> Victim:
        return Victim(
            self.tenant_id,
            "loc_nonexistent0000000000000",
            self.user,
            "ord_nonexistent0000000000000",
            "app_nonexistent0000000000000",
            "ep_nonexistent00000000000000",
            "dlv_nonexistent0000000000000",
        )


async def victim(estate: Estate) -> Victim:
    order = estate.order("t0", "l0", "u0")
    app = estate.app("t0", "l0", "channel")
    r = await estate.http.post(
        f"/v1/apps/{app.id}/endpoints",
        headers=estate.admin,
        json={"url": "https://example.com/victim-hook"},
    )
    assert r.status_code == 201, r.text
    endpoint = r.json()["id"]
    r = await estate.http.post(f"/v1/orders/{order.id}/deliveries", headers=app.auth, json={})
    assert r.status_code == 201, r.text
    return Victim(
        order.tenant_id, order.location_id, "u0", order.id, app.id, endpoint, r.json()["id"]
    )


def _partner_auth(a: Attacker) -> dict[str, str]:
    """The attacker's own Doshii JWT (HS256 {clientId, timestamp} with its secret); a user
    attacker presents its access token instead."""
    if a.app is None:
        return a.headers
    return {"Authorization": f"Bearer {doshii_jwt(a.app.key, a.app.secret)}"}


def _fill_body(body: Any, v: Victim) -> Any:
    return json.loads(v.fill(json.dumps(body))) if body is not None else None


async def _call(
    estate: Estate, route: str, entry: Entry, v: Victim, headers: dict[str, str]
) -> httpx.Response:
    method, path = route.split(" ", 1)
    return await estate.http.request(
        method,
        v.fill(path),
        headers=headers,
        json=_fill_body(entry.body, v),
        params={k: v.fill(x) for k, x in entry.query.items()} or None,
    )


def _no_leak(estate: Estate, what: str, text: str, a: Attacker | None = None) -> None:
    """No marker of an order that ``a`` may not see (any order, for anonymous calls)."""
    hidden = [o.marker for o in estate.orders.values() if a is None or not a.may_see(o)]
    leaked = [m for m in hidden if m in text]
    assert not leaked, f"{what} leaked {leaked}: {text[:500]}"


# -- REST ------------------------------------------------------------------------------------


async def test_rest_routes(estate: Estate) -> None:
    v = await victim(estate)
    ghost = v.nonexistent()
    before = (await estate.http.get(f"/v1/orders/{v.order_id}", headers=estate.admin)).json()
    who = await attackers(estate)
    checked = 0
    for route, entry in ROUTES.items():
        if entry.target in ("pusher_auth", "pusher_user", "pusher_api", "pusher_own"):
            continue  # test_pusher
        if entry.target in ("static", "stream"):
            continue  # see matrix.py
        if entry.target == "public":
            r = await _call(estate, route, entry, v, {})
            assert r.status_code == 200, (route, r.text[:200])
            _no_leak(estate, route, r.text)
            checked += 1
            continue
        for a in who:
            what = f"{route} by {a.name}"
            if entry.target in ("partner", "partner_own"):
                headers = {**_partner_auth(a), "doshii-location-id": v.location_id}
                r = await _call(estate, route, entry, v, headers)
                _no_leak(estate, what, r.text, a)
                checked += 1
                if entry.target == "partner":
                    assert r.status_code in (401, 403, 404), (what, r.status_code, r.text)
                    if a.scope == "tenant":
                        ghost_headers = {**headers, "doshii-location-id": ghost.location_id}
                        r_ghost = await _call(estate, route, entry, ghost, ghost_headers)
                        assert r.status_code == r_ghost.status_code, (what, r.text, r_ghost.text)
                continue
            r = await _call(estate, route, entry, v, a.headers)
            _no_leak(estate, what, r.text, a)
            checked += 1
            if entry.target == "list":
                assert r.status_code == 200, (what, r.text)
                for order in r.json()["orders"]:
                    assert order["id"] != v.order_id, what
                q = {"location_id": v.location_id}
                r2 = await estate.http.get("/v1/orders", headers=a.headers, params=q)
                _no_leak(estate, what, r2.text, a)
                if a.at_victim_location:  # their own orders there
                    assert r2.status_code == 200 and r2.json()["orders"], (what, r2.text)
                    continue
                assert r2.status_code == (404 if a.scope == "tenant" else 403), (what, r2.text)
                continue
            if entry.target == "own":
                continue  # any answer; the bytes were checked above
            if entry.target == "location" and a.at_victim_location:
                assert r.status_code == 200, (what, r.text)
                continue
            if entry.target == "mint":
                if a.app is None or a.app.kind != "channel":
                    assert r.status_code == 403, (what, r.text)
                    continue
                assert r.status_code == 201, (what, r.text)
                token = r.json()["access_token"]
                for path in (f"/v1/orders/{v.order_id}", f"/v1/orders/{v.order_id}/events"):
                    r2 = await estate.http.get(path, headers=bearer(token))
                    _no_leak(estate, what, r2.text, a)
                    assert r2.status_code == (404 if a.scope == "tenant" else 403), (what, r2.text)
                r2 = await estate.http.get("/v1/orders", headers=bearer(token))
                _no_leak(estate, what, r2.text, a)
                continue
            if entry.target == "admin":
                assert r.status_code in (401, 403), (what, r.status_code, r.text)
                continue
            assert r.status_code in (403, 404), (what, r.status_code, r.text)
            if a.scope == "tenant":
                # Exactly what the same call answers for an id that does not exist.
                r_ghost = await _call(estate, route, entry, ghost, a.headers)
                assert (r.status_code, r.json().get("code")) == (
                    r_ghost.status_code,
                    r_ghost.json().get("code"),
                ), (what, r.text, r_ghost.text)
            else:
                assert r.status_code == 403, (what, r.text)
    assert checked > 500
    # Nothing an attacker sent changed the victim's order or its endpoint.
    after = (await estate.http.get(f"/v1/orders/{v.order_id}", headers=estate.admin)).json()
    assert after["version"] == before["version"] and after["status"] == before["status"]
    r = await estate.http.get(
        f"/v1/apps/{v.app_id}/endpoints/{v.endpoint_id}", headers=estate.admin
    )
    assert r.status_code == 200 and r.json()["description"] is None


# -- Pusher ----------------------------------------------------------------------------------


def _signed_path(app: App, method: str, path: str, body: bytes) -> str:
    params = {
        "auth_key": app.key,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
    }
    if body:
        params["body_md5"] = body_md5(body)
    to_sign = string_to_sign(method, path, params)
    params["auth_signature"] = hmac.new(
        app.secret.encode(), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return f"{path}?{urlencode(params)}"


async def test_pusher(estate: Estate) -> None:
    v = await victim(estate)
    ghost = v.nonexistent()
    who = await attackers(estate)
    victim_app = estate.app("t0", "l0", "channel")
    channels = [v.fill(template) for template in PUSHER_CHANNELS.values()]
    for route, entry in ROUTES.items():
        method, path = route.split(" ", 1)
        for a in who:
            what = f"{route} by {a.name}"
            if entry.target == "pusher_auth":
                for channel in channels:
                    form = {"socket_id": "123.456", "channel_name": channel}
                    tries: list[tuple[dict[str, str], dict[str, str]]] = []
                    if entry.via == "headers":
                        tries.append((a.headers, {}))
                    elif a.app is not None:
                        tries.append(({}, {"key": a.app.key, "secret": a.app.secret}))
                    else:
                        assert a.issuer is not None and a.token is not None
                        for key in (a.issuer.key, victim_app.key):  # app keys are public
                            tries.append(({}, {"key": key, "access_token": a.token}))
                    for headers, creds in tries:
                        if method == "GET":
                            r = await estate.http.get(
                                path, headers=headers, params={**creds, **form}
                            )
                        else:
                            r = await estate.http.post(
                                path, headers=headers, params=creds, data=form
                            )
                        _no_leak(estate, what, r.text, a)
                        assert r.status_code in (403, 404), (what, channel, r.text)
                        assert "auth" not in r.json(), (what, r.text)
            elif entry.target == "pusher_user":
                r = await estate.http.post(path, headers=a.headers, data={"socket_id": "1.2"})
                _no_leak(estate, what, r.text, a)
                if r.status_code == 200:  # signs for the caller's own app only
                    own = a.app or a.issuer
                    assert own is not None and r.json()["auth"].startswith(own.key + ":")
            elif entry.target in ("pusher_api", "pusher_own") and a.app is not None:
                body = json.dumps(_fill_body(entry.body, v)).encode() if entry.body else b""
                for target in (v, ghost):
                    signed = _signed_path(a.app, method, target.fill(path), body)
                    r = await estate.http.request(
                        method,
                        signed,
                        content=body or None,
                        headers={"content-type": "application/json"},
                    )
                    _no_leak(estate, what, r.text, a)
                    if entry.target == "pusher_own":
                        assert r.status_code == 200, (what, r.text)
                        break
                    assert r.status_code == 404, (what, r.text)
    # Subscribing with a self-made signature (the app's own secret) to the victim's
    # channels, on every attacker app's own key.
    for a in who:
        if a.app is None:
            continue
        for channel in channels:
            outcome, seen = await pusher_subscribe(estate, a.app, channel, quiet=0.15)
            what = f"subscribe {channel} by {a.name}"
            assert outcome["event"] == "pusher:subscription_error", (what, seen.frames)
            status = json.loads(outcome["data"])["status"]
            assert status == (404 if a.scope == "tenant" else 403), (what, outcome)
            _no_leak(estate, what, seen.text, a)
    # Control: the victim's own app subscribes and gets the cached event with the marker.
    marker = estate.order("t0", "l0", "u0").marker
    r = await estate.http.post(
        f"/v1/orders/{v.order_id}/notes", headers=victim_app.auth, json={"text": marker}
    )
    assert r.status_code == 200, r.text
    outcome, seen = await pusher_subscribe(estate, victim_app, channels[0])
    assert outcome["event"] == "pusher_internal:subscription_succeeded"
    assert marker in seen.text


# -- STOMP -----------------------------------------------------------------------------------


async def test_stomp(estate: Estate) -> None:
    v = await victim(estate)
    who = await attackers(estate)
    victim_app = estate.app("t0", "l0", "channel")
    marker = estate.order("t0", "l0", "u0").marker
    version = [0]

    async def victim_changes() -> None:
        version[0] += 1
        r = await estate.http.post(
            f"/v1/orders/{v.order_id}/notes",
            headers=victim_app.auth,
            json={"text": f"gate code {marker} #{version[0]}"},
        )
        assert r.status_code == 200, r.text

    refused = allowed = 0
    for prefix, templates in STOMP_DESTINATIONS.items():
        for template in templates:
            destination = v.fill(template)
            for a in who:
                what = f"SUBSCRIBE {destination} by {a.name}"
                login, passcode = (
                    (a.app.key, a.app.secret) if a.app is not None else (a.token or "", "")
                )
                path = "/websocket" if prefix == "venue" else "/ws"  # both gateway paths
                out = await stomp_subscribe(
                    estate, login, passcode, destination, then=victim_changes, quiet=0.2, path=path
                )
                assert out.connected, (what, out.capture.frames)
                _no_leak(estate, what, out.capture.text, a)
                if out.subscribed and prefix in STOMP_SILENT:
                    assert v.order_id not in out.capture.text, what
                elif out.subscribed:
                    # Only a user's own multi-order stream, filtered to its app's locations.
                    allowed += 1
                    assert a.token is not None and a.name == "t0/u0 token minted by l1", what
                    assert v.order_id not in out.capture.text, what
                else:
                    refused += 1
                    assert out.error == "forbidden", (what, out.error)
    assert refused > 100 and allowed >= 1
    # Control: the victim's own user token on its own stream receives the marker.
    token = estate.tokens[("t0", "l0", "u0")]
    out = await stomp_subscribe(
        estate, token, "", f"/order-changes/u0/{v.order_id}", then=victim_changes
    )
    assert out.subscribed and marker in out.capture.text


async def test_doshii_socket(estate: Estate) -> None:
    """The Doshii partner socket (/app/socket): an attacker's own JWT; the victim's order
    changes; nothing of it arrives."""
    v = await victim(estate)
    who = [a for a in await attackers(estate) if a.app is not None]
    victim_app = estate.app("t0", "l0", "channel")
    marker = estate.order("t0", "l0", "u0").marker
    owner = Attacker("victim's own app", "", victim_app.auth, app=victim_app)
    sockets = []
    for a in [*who, owner]:
        auth = _partner_auth(a)["Authorization"].removeprefix("Bearer ")
        ws = await websockets.connect(
            estate.ws_url(f"/app/socket?auth={auth}"), open_timeout=5, ping_interval=None
        )
        # The socket authenticates after the handshake (a store read) and only then listens;
        # a change committed before that is not sent to it (this socket has no resume). A
        # ping is answered only once that is done: its pong says the socket is listening.
        await ws.send(json.dumps({"doshii": {"ping": 1}}))
        pong = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert pong == {"doshii": {"pong": 1}}, (a.name, pong)
        sockets.append(ws)
    try:
        r = await estate.http.post(
            f"/v1/orders/{v.order_id}/notes", headers=victim_app.auth, json={"text": marker}
        )
        assert r.status_code == 200, r.text
        control = Capture()
        # the owner's socket gets it (waited for: on two nodes it crosses the bus), so that
        # the attackers' sockets below are read after the change was fanned out everywhere
        deadline = time.monotonic() + 10
        while v.order_id not in control.text and time.monotonic() < deadline:
            await _drain(sockets[-1], control, 0.5)
        assert v.order_id in control.text, control.frames
        for a, ws in zip(who, sockets[:-1], strict=True):
            seen = Capture()
            await _drain(ws, seen, 0.2)
            assert not ws.close_code, (a.name, ws.close_reason)  # authenticated, listening
            _no_leak(estate, f"/app/socket of {a.name}", seen.text, a)
            assert v.order_id not in seen.text, a.name
    finally:
        for ws in sockets:
            await ws.close()


# -- the console's live stream (SSE) ------------------------------------------------------


async def test_console_stream(estate: Estate) -> None:
    """``GET /dashboard/api/locations/{id}/stream`` on a real HTTP server (the stream never
    ends, so not through the in-process transport): every attacker is refused the victim's
    location with nothing of it in the answer, and an app's stream of its own location
    carries nothing of the victim's order while that order changes."""
    streams = [route for route, entry in ROUTES.items() if entry.target == "stream"]
    assert streams == ["GET /dashboard/api/locations/{location_id}/stream"], (
        "a new stream route needs its own attack here"
    )
    v = await victim(estate)
    who = await attackers(estate)
    seen: dict[str, list[str]] = {}

    async def read(http: httpx.AsyncClient, name: str, path: str, headers: dict[str, str]) -> None:
        async with http.stream("GET", path, headers=headers) as r:
            seen[name] = [str(r.status_code)]
            async for line in r.aiter_lines():
                seen[name].append(line)

    stream = "/dashboard/api/locations/{}/stream"
    readers = []
    async with (
        serve_http(estate.runtime) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        try:
            for a in who:
                readers.append(
                    asyncio.create_task(
                        read(
                            http,
                            f"{a.name} on the victim's",
                            stream.format(v.location_id),
                            a.headers,
                        )
                    )
                )
                if a.app is not None:
                    own = stream.format(a.app.location_id)
                    readers.append(
                        asyncio.create_task(read(http, f"{a.name} on its own", own, a.headers))
                    )
            control = estate.app("t0", "l0", "kds")  # granted the victim's location
            readers.append(
                asyncio.create_task(
                    read(http, "control", stream.format(v.location_id), control.auth)
                )
            )
            await asyncio.sleep(0.5)  # every stream open (or refused)
            marker = estate.order("t0", "l0", "u0").marker
            r = await estate.http.post(
                f"/v1/orders/{v.order_id}/notes", headers=control.auth, json={"text": marker}
            )
            assert r.status_code == 200, r.text
            for _ in range(50):
                if "event: change" in seen.get("control", []):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the other streams had the same chance
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    # The stream works: the control got the victim's change (a card: the note's text is not
    # on the board, so for the others the order's id is what must not appear either).
    assert seen["control"][0] == "200", seen["control"]
    change = seen["control"].index("event: change")
    assert v.order_id in seen["control"][change + 1], seen["control"][change + 1][:300]
    for a in who:
        name = f"{a.name} on the victim's"
        status, text = seen[name][0], "\n".join(seen[name][1:])
        expected = "404" if a.scope == "tenant" and a.app is not None else "403"
        assert status == expected, (name, status, text[:300])
        _no_leak(estate, name, text, a)
        assert v.order_id not in text, name
        if a.app is not None:
            name = f"{a.name} on its own"
            status, text = seen[name][0], "\n".join(seen[name][1:])
            assert status == "200", (name, status, text[:300])
            _no_leak(estate, name, text, a)
            assert v.order_id not in text, name
