"""Finding 6 of issue 12: failed logins are limited per (address, credential), on every
way in (REST Basic and Bearer, both Pusher auth endpoints, STOMP CONNECT), answered 429
problem+json with Retry-After; another credential from the same address is not locked out.
The Doshii Partner API and socket, and the OAuth2 token endpoint
(tests/integration/test_oauth_accounts.py), are limited the same way."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
import websockets

from ordercast.settings import Settings
from security.estate import BACKEND, Estate, basic, bearer, stomp_subscribe
from support.doshii import doshii_jwt
from support.stomp import raw_client

LIMIT = 3

# The limits are kept per process: on two nodes a credential blocked on one is not on the other
# (README, Security model), so these tests are about one node.
pytestmark = pytest.mark.skipif(
    BACKEND == "two-nodes", reason="failed-login limits are per node, not cluster-wide"
)


def _assert_429(r: Any, problem_json: bool = True) -> None:
    assert r.status_code == 429, (r.status_code, r.text)
    wait = int(r.headers["retry-after"])
    assert 1 <= wait <= 60
    if problem_json:
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["code"] == "rate_limited" and body["status"] == 429
        assert "too many failed logins" in body["detail"]


async def test_limits_are_configurable() -> None:
    s = Settings(login_max_failures=5, login_window_seconds=30)
    assert (s.login_max_failures, s.login_window_seconds) == (5, 30)
    assert (Settings().login_max_failures, Settings().login_window_seconds) == (10, 60)


async def test_rest_basic_and_bearer(estate: Estate) -> None:
    estate.runtime.directory.logins.max_failures = LIMIT
    http = estate.http
    victim = estate.app("t0", "l0", "channel")
    neighbour = estate.app("t0", "l0", "pos")  # same address (same restaurant NAT)
    for _ in range(LIMIT):
        r = await http.get("/v1/orders", headers=basic(victim.key, "wrong"))
        assert r.status_code == 401
    # Blocked for this key from this address, even with the right secret ...
    _assert_429(await http.get("/v1/orders", headers=victim.auth))
    # ... on the order-command shortcut too,
    order = estate.order("t0", "l0", "u0")
    _assert_429(
        await http.post(f"/v1/orders/{order.id}/notes", headers=victim.auth, json={"text": "x"})
    )
    # ... while another app from the same address carries on.
    r = await http.get("/v1/orders", headers=neighbour.auth)
    assert r.status_code == 200 and r.json()["orders"]
    # Guesses at the admin token are one credential: blocked after LIMIT, apps unaffected.
    for i in range(LIMIT):
        r = await http.post("/v1/tenants", headers=bearer(f"guess-{i}"), json={"name": "x"})
        assert r.status_code == 401
    _assert_429(await http.post("/v1/tenants", headers=estate.admin, json={"name": "x"}))
    # A user token whose signature is forged: its claims are the credential.
    token = estate.tokens[("t0", "l0", "u0")]
    forged = token.rsplit(".", 1)[0] + ".AAAA"
    for _ in range(LIMIT):
        assert (await http.get("/v1/orders", headers=bearer(forged))).status_code == 401
    _assert_429(await http.get("/v1/orders", headers=bearer(token)))
    other_user = estate.tokens[("t0", "l0", "u1")]
    assert (await http.get("/v1/orders", headers=bearer(other_user))).status_code == 200


async def test_pusher_auth_endpoints(estate: Estate) -> None:
    estate.runtime.directory.logins.max_failures = LIMIT
    http = estate.http
    victim = estate.app("t1", "l0", "channel")
    neighbour = estate.app("t1", "l0", "kds")
    channel = f"private-o-{estate.order('t1', 'l0', 'u0').id}"
    form = {"socket_id": "1.2", "channel_name": channel}
    for _ in range(LIMIT):
        r = await http.post(
            "/api/v1/pusher/auth", params={"key": victim.key, "secret": "wrong"}, data=form
        )
        assert r.status_code == 403
    r = await http.post(
        "/api/v1/pusher/auth", params={"key": victim.key, "secret": victim.secret}, data=form
    )
    _assert_429(r, problem_json=False)
    assert r.json()["code"] == "rate_limited"
    # The standard endpoint with the same key in a Basic header: the same credential.
    r = await http.post("/pusher/auth", headers=victim.auth, data=form)
    _assert_429(r, problem_json=False)
    r = await http.post("/pusher/auth", headers=neighbour.auth, data=form)
    assert r.status_code == 200 and r.json()["auth"].startswith(neighbour.key + ":")
    # Bearer on the standard endpoints, forged user token.
    token = estate.tokens[("t1", "l0", "u0")]
    forged = token.rsplit(".", 1)[0] + ".AAAA"
    for _ in range(LIMIT):
        r = await http.post("/pusher/auth", headers=bearer(forged), data=form)
        assert r.status_code == 403
    _assert_429(await http.post("/pusher/auth", headers=bearer(token), data=form), False)
    _assert_429(await http.post("/pusher/user-auth", headers=bearer(token), data=form), False)


async def test_stomp_connect(estate: Estate) -> None:
    estate.runtime.directory.logins.max_failures = LIMIT
    victim = estate.app("t0", "l1", "kds")
    neighbour = estate.app("t0", "l1", "pos")
    destination = f"/kds/{victim.tenant_id}/{victim.location_id}"
    for _ in range(LIMIT):
        out = await stomp_subscribe(estate, victim.key, "wrong", destination, quiet=0.05)
        assert not out.connected and "authentication failed" in out.capture.text
    out = await stomp_subscribe(estate, victim.key, victim.secret, destination, quiet=0.05)
    assert not out.connected and "too many failed logins" in out.capture.text
    out = await stomp_subscribe(estate, neighbour.key, neighbour.secret, destination, quiet=0.05)
    assert out.connected and out.subscribed
    # The same key over REST from the same address is blocked too (one limiter).
    raw = base64.b64encode(f"{victim.key}:{victim.secret}".encode()).decode()
    _assert_429(await estate.http.get("/v1/orders", headers={"Authorization": f"Basic {raw}"}))


async def _socket_close_reason(estate: Estate, auth: str) -> str | None:
    """The close reason the Doshii socket gives, or None while it stays open (0.3 s)."""
    async with websockets.connect(
        estate.ws_url(f"/app/socket?auth={auth}"), open_timeout=5, ping_interval=None
    ) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 0.3)
        except TimeoutError:
            return None
        except websockets.ConnectionClosed:
            pass
        return ws.close_reason


async def test_doshii_partner_api_and_socket(estate: Estate) -> None:
    """Each of the SDK's JWTs differs (its timestamp), so the app key is the credential:
    forged JWTs for one key block it on /partner/v3 and on /app/socket from this address."""
    estate.runtime.directory.logins.max_failures = LIMIT
    http = estate.http
    victim = estate.app("t1", "l1", "channel")
    neighbour = estate.app("t1", "l1", "pos")
    where = {"doshii-location-id": victim.location_id}
    for _ in range(LIMIT):
        forged = doshii_jwt(victim.key, "not-the-secret-of-this-app-0123456789")
        r = await http.get("/partner/v3/orders", headers={**where, **bearer(forged)})
        assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    good = doshii_jwt(victim.key, victim.secret)
    r = await http.get("/partner/v3/orders", headers={**where, **bearer(good)})
    assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text  # Doshii's shape
    assert 1 <= int(r.headers["retry-after"]) <= 60
    reason = await _socket_close_reason(estate, good)
    assert reason is not None and "too many failed logins" in reason
    # Another app from the same address: REST and socket both work.
    other = doshii_jwt(neighbour.key, neighbour.secret)
    where_n = {"doshii-location-id": neighbour.location_id}
    r = await http.get("/partner/v3/orders", headers={**where_n, **bearer(other)})
    assert r.status_code == 200, r.text
    assert await _socket_close_reason(estate, other) is None


async def test_behind_a_trusted_proxy_each_client_is_limited_on_its_own(estate: Estate) -> None:
    """On the gateway port, a trusted proxy's X-Forwarded-For names the client (loopback is
    trusted by default, as for uvicorn on the HTTP port): one client behind nginx failing
    with a key does not lock every other client of that key out. Untrusted, it is ignored."""
    rt = estate.runtime
    rt.directory.logins.max_failures = LIMIT
    victim = estate.app("t1", "l0", "kds")
    url = rt.gateway.url("/ws")

    async def connect(forwarded_for: str | None, secret: str) -> str:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
        async with raw_client(url, ["v12.stomp"], headers=headers) as client:
            reply = await client.connect(victim.key, secret)
            return reply.command if reply.command == "CONNECTED" else reply.headers["message"]

    assert rt.gateway.trusted_proxies  # the default: loopback
    for _ in range(LIMIT):
        assert "authentication failed" in await connect("203.0.113.7", "wrong")
    assert "too many failed logins" in await connect("203.0.113.7", victim.secret)
    assert await connect("198.51.100.9", victim.secret) == "CONNECTED"
    assert await connect(None, victim.secret) == "CONNECTED"  # the proxy's own address
    # A forged left part does not escape the block: the rightmost address is believed.
    assert "too many failed logins" in await connect("1.2.3.4, 203.0.113.7", victim.secret)
    # Nothing trusted: the header is ignored and every client is the peer (127.0.0.1).
    rt.gateway.trusted_proxies = ()
    for i in range(LIMIT):
        assert "authentication failed" in await connect(f"192.0.2.{i}", "wrong")
    assert "too many failed logins" in await connect("198.51.100.9", victim.secret)
