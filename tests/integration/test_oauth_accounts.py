"""Accounts, the OAuth2 token endpoint, JWT access tokens and Ordering Stack's order pulls.

Tokens are checked the way a third party would: decoded with PyJWT against the server's
JWKS document (no ordercast code), and used against the REST API and the STOMP gateway.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from ordercast.runtime import Runtime
from ordercast.services.tokens import TokenSigner
from ordercast.settings import Settings
from support.stomp import raw_client, start_stomp
from support.world import World, basic, bearer

TOKEN = "/auth-oauth2/oauth/token"


@pytest.fixture
async def runtime(sqlite_url: str) -> AsyncIterator[Runtime]:
    """conftest's runtime with a cheap argon2 cost (the default takes ~1 s per hash on a
    loaded 2-core box; the parameters are not what these tests are about)."""
    settings = Settings(
        database_url=sqlite_url,
        admin_token="admin-token-for-tests",
        argon2_memory_kib=1024,
        argon2_time_cost=1,
    )
    rt = await Runtime.open(settings)
    try:
        yield rt
    finally:
        await rt.close()


FORM = {"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"}
PASSWORD = "correct horse battery"


async def account(world: World, username: str, roles: list[str], **extra: Any) -> dict[str, Any]:
    r = await world.http.post(
        "/v1/accounts",
        headers=world.admin,
        json={
            "tenant_id": world.tenant_id,
            "username": username,
            "password": PASSWORD,
            "roles": roles,
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def grant(world: World, app: dict[str, Any], tenant: str | None = None, **form: str) -> Any:
    headers = {**FORM, **basic(app["key"], app["secret"])}
    headers["X-Tenant"] = tenant or world.tenant_id
    return await world.http.post(TOKEN, headers=headers, content=_form(form))


def _form(fields: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(fields)


async def jwks_claims(world: World, token: str) -> dict[str, Any]:
    """Verify ``token`` with the published JWKS only, as any other service would."""
    keys = (await world.http.get("/.well-known/jwks.json")).json()["keys"]
    [key] = keys
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert "d" not in key  # the private part never leaves
    assert jwt.get_unverified_header(token)["kid"] == key["kid"]
    claims: dict[str, Any] = jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["RS256"], options={"verify_iss": False}
    )
    return claims


async def test_accounts_are_created_by_the_admin_with_hashed_passwords(world: World) -> None:
    staff = await account(world, "anna", ["staff"], location_ids=[world.location_id])
    assert staff["roles"] == ["staff"] and staff["location_ids"] == [world.location_id]
    assert "password" not in json.dumps(staff) and "hash" not in json.dumps(staff)
    stored = await world.runtime.accounts.accounts.get(staff["id"])  # type: ignore[union-attr]
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    listed = (
        await world.http.get(f"/v1/accounts?tenant_id={world.tenant_id}", headers=world.admin)
    ).json()["accounts"]
    assert [a["username"] for a in listed] == ["anna"]

    async def refused(body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        base = {"tenant_id": world.tenant_id, "username": "x", "password": PASSWORD}
        r = await world.http.post("/v1/accounts", headers=headers or world.admin, json=base | body)
        return r.status_code, r.json()["code"]

    assert await refused({"username": "anna", "roles": ["customer"]}) == (409, "conflict")
    assert await refused({"roles": ["staff"]}) == (422, "validation_error")  # no venue
    assert await refused({"roles": ["customer"], "location_ids": [world.location_id]}) == (
        422,
        "validation_error",
    )
    assert await refused({"roles": ["chef"]}) == (422, "validation_error")
    assert await refused({"roles": ["customer"], "password": "short"}) == (422, "validation_error")
    assert await refused({"roles": ["staff"], "location_ids": ["loc_elsewhere"]}) == (
        422,
        "validation_error",
    )
    assert await refused({"roles": ["customer"]}, headers=world.auth) == (403, "forbidden")
    assert await refused({"roles": ["customer"], "tenant_id": "ten_nope"}) == (404, "not_found")


async def test_password_grant_issues_jwts_with_the_claims_clients_read(world: World) -> None:
    pos = await world.new_app("pos")
    staff = await account(world, "anna", ["staff"], location_ids=[world.location_id])
    kds = await account(world, "kds-1", ["kds"], location_ids=[world.location_id])
    r = await grant(world, pos, grant_type="password", username="anna", password=PASSWORD)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["UUID"] == staff["id"] and body["tenant"] == world.tenant_id
    claims = await jwks_claims(world, body["access_token"])
    assert claims["sub"] == claims["UUID"] == staff["id"]
    assert claims["tenant"] == world.tenant_id and claims["client_id"] == pos["id"]
    assert claims["roles"] == ["staff"] and claims["venues"] == [world.location_id]
    assert claims["exp"] - claims["iat"] == 3600 and "MODULE" not in claims
    # A KDS login is an Ordering Stack module (ordering-core subscribes /modules/… with it).
    r = await grant(world, pos, grant_type="password", username="kds-1", password=PASSWORD)
    assert (await jwks_claims(world, r.json()["access_token"]))["MODULE"] == kds["id"]

    # A staff token gets only the venues granted to both the login and the app.
    other = await world.new_app("pos", location_ids=[])
    r = await grant(world, other, grant_type="password", username="anna", password=PASSWORD)
    assert (await jwks_claims(world, r.json()["access_token"]))["venues"] == []


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("wrong password", 400, "invalid_grant"),
        ("unknown user", 400, "invalid_grant"),
        ("wrong client secret", 401, "invalid_client"),
        ("no client", 401, "invalid_client"),
        ("other tenant header", 401, "invalid_client"),
        ("unsupported grant", 400, "unsupported_grant_type"),
        ("no grant", 400, "invalid_request"),
        ("json body", 400, "invalid_request"),
        ("customer through a pos app", 400, "unauthorized_client"),
        ("bad refresh token", 400, "invalid_grant"),
        ("access token as refresh token", 400, "invalid_grant"),
        ("repeated parameter", 400, "invalid_request"),
    ],
)
async def test_token_errors_are_rfc6749_bodies(
    world: World, case: str, status: int, error: str
) -> None:
    await account(world, "anna", ["staff"], location_ids=[world.location_id])
    await account(world, "carl", ["customer"])
    pos = await world.new_app("pos")
    good = {"grant_type": "password", "username": "anna", "password": PASSWORD}
    headers = {**FORM, **basic(pos["key"], pos["secret"]), "X-Tenant": world.tenant_id}
    content: str = _form(good)
    if case == "wrong password":
        content = _form(good | {"password": "nope-nope-nope"})
    elif case == "unknown user":
        content = _form(good | {"username": "nobody"})
    elif case == "wrong client secret":
        headers |= basic(pos["key"], "wrong")
    elif case == "no client":
        del headers["Authorization"]
    elif case == "other tenant header":
        headers["X-Tenant"] = "ten_other"
    elif case == "unsupported grant":
        content = _form(good | {"grant_type": "implicit"})
    elif case == "no grant":
        content = _form({"username": "anna", "password": PASSWORD})
    elif case == "json body":
        headers["Content-Type"] = "application/json"
        content = json.dumps(good)
    elif case == "customer through a pos app":
        content = _form(good | {"username": "carl"})
    elif case == "bad refresh token":
        content = _form({"grant_type": "refresh_token", "refresh_token": "eyJ.x.y"})
    elif case == "access token as refresh token":
        access = (await grant(world, pos, **good)).json()["access_token"]
        content = _form({"grant_type": "refresh_token", "refresh_token": access})
    elif case == "repeated parameter":
        content = _form(good) + "&grant_type=password"
    r = await world.http.post(TOKEN, headers=headers, content=content)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "error_description"} and body["error"] == error
    assert body["error_description"]
    assert r.headers["cache-control"] == "no-store"
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Basic")


async def test_failed_logins_are_limited_per_account_and_per_client(world: World) -> None:
    """Password guesses are limited per (address, account), client-secret guesses per
    (address, app key): 429 with Retry-After in the RFC 6749 error shape; the right password
    is refused too while blocked, and other accounts and apps from the same address carry on."""
    world.runtime.directory.logins.max_failures = 3
    await account(world, "anna", ["staff"], location_ids=[world.location_id])
    await account(world, "bert", ["staff"], location_ids=[world.location_id])
    pos, other_pos = await world.new_app("pos"), await world.new_app("pos")
    anna = {"grant_type": "password", "username": "anna", "password": PASSWORD}
    for _ in range(3):
        r = await grant(world, pos, **anna | {"password": "guess"})
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = await grant(world, pos, **anna)
    assert r.status_code == 429, r.text
    assert r.json()["error"] == "temporarily_unavailable"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["cache-control"] == "no-store"
    # Through another client too: the account is the credential, not the app.
    assert (await grant(world, other_pos, **anna)).status_code == 429
    # Another account, and the client-credentials grant, from the same address: unaffected.
    r = await grant(world, pos, grant_type="password", username="bert", password=PASSWORD)
    assert r.status_code == 200, r.text
    assert (await grant(world, pos, grant_type="client_credentials")).status_code == 200
    # Client secret guesses: blocked for that key only.
    wrong = {**pos, "secret": "wrong"}
    for _ in range(3):
        r = await grant(world, wrong, grant_type="client_credentials")
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = await grant(world, pos, grant_type="client_credentials")
    assert r.status_code == 429 and r.json()["error"] == "temporarily_unavailable"
    r = await grant(world, other_pos, grant_type="client_credentials")
    assert r.status_code == 200, r.text


async def test_refresh_and_client_credentials(world: World) -> None:
    staff = await account(world, "anna", ["staff"], location_ids=[world.location_id])
    pos = await world.new_app("pos")
    first = (
        await grant(world, pos, grant_type="password", username="anna", password=PASSWORD)
    ).json()
    r = await grant(world, pos, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["UUID"] == staff["id"] and again["access_token"] != first["access_token"]
    assert (await jwks_claims(world, again["access_token"]))["venues"] == [world.location_id]
    # Only the client it was issued to may use a refresh token; it is no access token.
    other = await world.new_app("pos")
    r = await grant(world, other, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    r = await world.http.get("/v1/orders", headers=bearer(first["refresh_token"]))
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")

    # client_credentials: the app's own token works where its key:secret does.
    r = await grant(world, pos, grant_type="client_credentials")
    assert r.status_code == 200, r.text
    app_token = r.json()["access_token"]
    assert "refresh_token" not in r.json()
    claims = await jwks_claims(world, app_token)
    assert (claims["sub"], claims["typ"], claims["roles"]) == (pos["id"], "app", ["APP:pos"])
    mine = await world.order()
    listed = (await world.http.get("/v1/orders", headers=bearer(app_token))).json()["orders"]
    assert [o["id"] for o in listed] == [mine["id"]]

    # The admin moves Anna to no venue, then disables her: a refresh reads the account as
    # it is now, and a disabled login gets nothing.
    r = await world.http.patch(
        f"/v1/accounts/{staff['id']}", headers=world.admin, json={"location_ids": []}
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")  # staff need one
    r = await world.http.patch(
        f"/v1/accounts/{staff['id']}", headers=world.admin, json={"disabled": True}
    )
    assert r.status_code == 200 and r.json()["disabled"] is True
    r = await grant(world, pos, grant_type="refresh_token", refresh_token=again["refresh_token"])
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    r = await grant(world, pos, grant_type="password", username="anna", password=PASSWORD)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    r = await world.http.patch(
        f"/v1/accounts/{staff['id']}",
        headers=world.admin,
        json={"disabled": False, "password": "a new password"},
    )
    assert r.status_code == 200, r.text
    r = await grant(world, pos, grant_type="password", username="anna", password="a new password")
    assert r.status_code == 200 and r.json()["UUID"] == staff["id"]
    r = await grant(world, pos, grant_type="password", username="anna", password=PASSWORD)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


async def test_user_tokens_are_jwts_and_old_tokens_still_work_until_they_expire(
    world: World,
) -> None:
    order = await world.order(user_id="cust-1")
    r = await world.http.post("/v1/users/cust-1/tokens", headers=world.auth)
    token = r.json()["access_token"]
    claims = await jwks_claims(world, token)
    assert (claims["sub"], claims["tenant"], claims["typ"]) == ("cust-1", world.tenant_id, "access")
    assert (await world.http.get(f"/v1/orders/{order['id']}", headers=bearer(token))).json()[
        "id"
    ] == order["id"]
    # An oct_ token issued before the switch (same server secret) is still honoured ...
    legacy = world.runtime.directory.signer.legacy
    assert isinstance(legacy, TokenSigner)
    now = int(world.runtime.clock.now().timestamp())
    old = legacy.issue(
        user_id="cust-1", tenant_id=world.tenant_id, app_id=world.app["id"], now=now, ttl=600
    )
    assert old.startswith("oct_")
    r = await world.http.get(f"/v1/orders/{order['id']}", headers=bearer(old))
    assert r.status_code == 200 and r.json()["id"] == order["id"]
    # ... until it expires; a forged JWT is refused.
    expired = legacy.issue(
        user_id="cust-1", tenant_id=world.tenant_id, app_id=world.app["id"], now=now - 700, ttl=600
    )
    r = await world.http.get(f"/v1/orders/{order['id']}", headers=bearer(expired))
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    head, body, _sig = token.split(".")
    forged_claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged_claims["sub"] = "someone-else"
    forged_body = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=")
    forged = f"{head}.{forged_body.decode()}.{_sig}"
    r = await world.http.get(f"/v1/orders/{order['id']}", headers=bearer(forged))
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")


async def test_ordering_stack_pulls(world: World) -> None:
    staff = await account(world, "anna", ["staff"], location_ids=[world.location_id])
    carl = await account(world, "carl", ["customer"])
    kds_app = await world.new_app("kds")
    staff_token = (
        await grant(world, kds_app, grant_type="password", username="anna", password=PASSWORD)
    ).json()["access_token"]
    carl_token = (
        await grant(world, world.app, grant_type="password", username="carl", password=PASSWORD)
    ).json()["access_token"]
    # Five orders: two of Carl's (one closed), one of someone else, one draft, one preparing.
    a = await world.order(user_id=carl["id"])
    b = await world.order(user_id=carl["id"])
    c = await world.order(user_id="someone-else")
    d = await world.order(user_id=carl["id"], status="draft")
    e = await world.order()
    for to in ("accepted", "preparing"):
        assert (await world.move(e["id"], to)).status_code == 200
    for to in ("accepted", "preparing", "ready", "handed_off", "completed"):
        assert (await world.move(b["id"], to)).status_code == 200

    r = await world.http.get(
        f"/ordering-api/api/orders/venue/{world.location_id}", headers=bearer(staff_token)
    )
    assert r.status_code == 200, r.text
    venue = r.json()
    # Open and submitted: what the venue's KDS stream shows (not the draft, not the closed).
    assert [o["id"] for o in venue] == [a["id"], c["id"], e["id"]]
    by_id = {o["id"]: o for o in venue}
    assert by_id[e["id"]]["status"] == "VERIFIED" and by_id[a["id"]]["status"] == "COMPLETED"
    assert all(o["completed"] and not o["closed"] for o in venue)
    assert by_id[a["id"]]["buckets"][0]["venue"] == world.location_id
    assert [line["productId"] for line in by_id[a["id"]]["buckets"][0]["lines"]] == [
        "burger",
        "fries",
    ]
    assert by_id[a["id"]]["users"][0]["userId"] == carl["id"]
    # The same pull with the app's key:secret; refused to a customer and to another venue.
    r = await world.http.get(
        f"/ordering-api/api/orders/venue/{world.location_id}",
        headers=basic(kds_app["key"], kds_app["secret"]),
    )
    assert [o["id"] for o in r.json()] == [a["id"], c["id"], e["id"]]
    # A customer of the venue may not pull its orders (403: the venue is of the same
    # tenant); an unknown venue reads as not found.
    for headers, venue_id, expected in (
        (bearer(carl_token), world.location_id, (403, "forbidden")),
        (bearer(staff_token), "loc_elsewhere", (404, "not_found")),
    ):
        r = await world.http.get(f"/ordering-api/api/orders/venue/{venue_id}", headers=headers)
        assert (r.status_code, r.json()["code"]) == expected

    r = await world.http.get("/ordering-api/api/orders/opened", headers=bearer(carl_token))
    assert r.status_code == 200, r.text
    opened = r.json()
    assert [o["id"] for o in opened] == [a["id"], d["id"]]  # Carl's, not closed
    assert [o["completed"] for o in opened] == [True, False]  # "completed" = submitted
    r = await world.http.get("/ordering-api/api/orders/opened", headers=world.auth)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    assert staff["id"] != carl["id"]


async def test_staff_login_follows_its_venue_on_the_gateway(world: World) -> None:
    await account(world, "anna", ["staff"], location_ids=[world.location_id])
    pos = await world.new_app("pos")
    token = (
        await grant(world, pos, grant_type="password", username="anna", password=PASSWORD)
    ).json()["access_token"]
    rt = world.runtime
    await start_stomp(rt)
    async with raw_client(rt.gateway.url("/ws")) as c:
        # Ordering Stack's POS integrator sends passcode "null".
        assert (await c.connect(token, "null")).command == "CONNECTED"
        dest = f"/kds/{world.tenant_id}/{world.location_id}"
        assert (await c.subscribe(dest)).command == "RECEIPT"
        for i, sub in enumerate(("/steering", "/venues")):
            got = await c.subscribe(f"{sub}/{world.tenant_id}/{world.location_id}", f"s{i}")
            assert got.command == "RECEIPT"
        orders = [await world.order(external_order_ref=f"ext-{i}") for i in range(3)]
        got = [json.loads((await c.expect("MESSAGE")).body) for _ in orders]
        assert [g["id"] for g in got] == [o["id"] for o in orders]
        assert [g["extId"] for g in got] == ["ext-0", "ext-1", "ext-2"]
        assert all(g["status"] == "COMPLETED" for g in got)
        # Another venue stays closed to this login.
        err = await c.subscribe(f"/kds/{world.tenant_id}/loc_other", "s9")
        assert (err.command, err.headers["message"]) == ("ERROR", "forbidden")


async def test_a_token_from_one_node_works_on_another(world: World, sqlite_url: str) -> None:
    """Nodes sharing a database have their own addresses; their tokens are one currency
    (same key from the database, same issuer)."""
    r = await world.http.post("/v1/users/cust-1/tokens", headers=world.auth)
    token = r.json()["access_token"]
    other = await Runtime.open(
        Settings(database_url=sqlite_url, admin_token="admin-token-for-tests", http_port=18099)
    )
    try:
        assert other.settings.base_url != world.runtime.settings.base_url
        principal = await other.directory.authenticate_bearer(token)
        assert (principal.user_id, principal.tenant_id) == ("cust-1", world.tenant_id)  # type: ignore[union-attr]
        assert other.directory.signer.jwks() == world.runtime.directory.signer.jwks()
    finally:
        await other.close()
