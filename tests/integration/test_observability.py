"""Metrics worth alerting on, structured logs without secrets, the OpenAPI document users
read, and changing an app: real STOMP sockets, a real webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from aiohttp import web
from ulid import ULID

from ordercast.logs import configure_logging
from ordercast.runtime import Runtime
from support.doshii import doshii_jwt
from support.stomp import raw_client, start_stomp
from support.webhooks import ADMIN, Receiver, open_runtime, wait_for
from support.world import World, basic, bearer, make_world


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if head.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


@pytest.fixture
async def rt(tmp_path: Any) -> AsyncIterator[Runtime]:
    async for runtime in open_runtime(f"sqlite:///{tmp_path}/obs.db"):
        await runtime.start_delivery()
        yield runtime


@pytest.fixture
async def w(rt: Runtime) -> AsyncIterator[World]:
    async for world in make_world(rt):
        yield world


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_metrics_follow_sockets_fanout_webhooks_and_logins(
    w: World, receiver: Receiver
) -> None:
    await start_stomp(w.runtime)
    before = (await w.http.get("/metrics")).text
    failing = Receiver()
    failing.responder = lambda _item: web.json_response({"no": True}, status=500)
    await failing.start()
    try:
        for url in (receiver.url, failing.url):
            r = await w.http.post(
                f"/v1/apps/{w.app['id']}/endpoints", headers=w.auth, json={"url": url}
            )
            assert r.status_code == 201, r.text
        screen = await w.new_app("kds")
        url = w.runtime.gateway.url("/ws")
        async with raw_client(url, ["v12.stomp"]) as kds, raw_client(url, ["v12.stomp"]) as bad:
            assert (await kds.connect(screen["key"], screen["secret"])).command == "CONNECTED"
            assert (await kds.subscribe(f"/kds/{w.tenant_id}/{w.location_id}")).command == "RECEIPT"
            assert (await bad.connect(w.app["key"], "wrong-secret")).command == "ERROR"
            orders = [await w.order() for _ in range(3)]
            for order in orders:
                assert (await w.move(order["id"], "preparing")).status_code == 200
            seen = []
            for _ in range(6):
                seen.append(await kds.expect("MESSAGE"))
            assert {f.headers.get("event-type") for f in seen} >= {"order.created"}
            await wait_for(lambda: len(receiver.received) >= 6, what="6 deliveries")
            assert (await w.http.get("/v1/orders", headers=basic("nope", "x"))).status_code == 401

            async def attempted() -> bool:
                text = (await w.http.get("/metrics")).text
                return (
                    sample(text, "ordercast_webhook_deliveries_total", outcome="retry")
                    + sample(text, "ordercast_webhook_deliveries_total", outcome="failed")
                ) >= 6

            await wait_for(attempted, what="failed attempts counted")
            await w.http.get("/docs")
            text = (await w.http.get("/metrics")).text
            app = screen["id"]
            assert sample(text, "ordercast_ws_connections", protocol="stomp", app=app) == 1
            assert sample(text, "ordercast_ws_subscriptions", protocol="stomp", app=app) == 1
    finally:
        await failing.stop()
    fanned = sample(text, "ordercast_fanout_messages_total", protocol="stomp") - sample(
        before, "ordercast_fanout_messages_total", protocol="stomp"
    )
    assert fanned == 6  # three orders, two changes each, one subscriber
    latency = sample(text, "ordercast_fanout_latency_seconds_count") - sample(
        before, "ordercast_fanout_latency_seconds_count"
    )
    assert latency == 6
    delivered = sample(
        text, "ordercast_webhook_deliveries_total", outcome="delivered", dialect="ordercast"
    ) - sample(
        before, "ordercast_webhook_deliveries_total", outcome="delivered", dialect="ordercast"
    )
    assert delivered == len(receiver.received) == 6
    assert sample(text, "ordercast_webhook_latency_seconds_count", dialect="ordercast") >= 12
    assert sample(text, "ordercast_auth_failures_total", surface="stomp") >= 1
    assert sample(text, "ordercast_auth_failures_total", surface="http") >= 1
    # The failing endpoint's messages wait for their retry: the outbox is not empty.
    assert sample(text, "ordercast_outbox_messages", status="pending") >= 1
    assert "ordercast_outbox_oldest_due_age_seconds" in text
    assert "ordercast_pos_timers_pending" in text
    assert "ordercast_bus_reconnects_total" in text
    assert sample(text, "process_cpu_seconds_total") > 0
    assert sample(text, "ordercast_http_requests_total", route="/docs", status="200") >= 1
    assert sample(text, "ordercast_http_requests_total", route="/docs", method="GET") >= 1


async def test_doshii_sockets_are_in_the_metrics_and_on_the_console(w: World) -> None:
    await start_stomp(w.runtime)  # the gateway port, where /app/socket is served
    token = doshii_jwt(w.app["key"], w.app["secret"])
    before = (await w.http.get("/metrics")).text
    url = w.runtime.gateway.url(f"/app/socket?auth={token}")
    async with websockets.connect(url, open_timeout=5, ping_interval=None) as ws:

        async def connected() -> bool:
            text = (await w.http.get("/metrics")).text
            return sample(text, "ordercast_ws_connections", protocol="doshii", app=w.app["id"]) == 1

        await wait_for(connected, what="the Doshii socket counted")
        orders = [await w.order() for _ in range(2)]  # the app's own: it is subscribed
        got = ""
        while not all(o["id"] in got for o in orders):
            got += str(await asyncio.wait_for(ws.recv(), 5))
        text = (await w.http.get("/metrics")).text
        assert sample(text, "ordercast_ws_subscriptions", protocol="doshii", app=w.app["id"]) == 1
        fanned = sample(text, "ordercast_fanout_messages_total", protocol="doshii") - sample(
            before, "ordercast_fanout_messages_total", protocol="doshii"
        )
        assert fanned == 2
        rows = (await w.http.get("/dashboard/api/connections", headers=w.auth)).json()["apps"]
        [row] = [r for r in rows if r["protocol"] == "doshii"]
        assert row["app_id"] == w.app["id"] and row["connections"] == 1
        assert row["channels"] == [{"name": "order updates", "subscribers": 1, "members": None}]

    async def gone() -> bool:
        text = (await w.http.get("/metrics")).text
        return sample(text, "ordercast_ws_connections", protocol="doshii", app=w.app["id"]) == 0

    await wait_for(gone, what="the closed Doshii socket no longer counted")


async def test_logs_are_structured_and_hold_no_secrets(
    w: World, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", json_lines=True)
    try:
        await start_stomp(w.runtime)
        ep = (
            await w.http.post(
                f"/v1/apps/{w.app['id']}/endpoints",
                headers=w.auth,
                json={"url": receiver.url + "?token=hook-query-secret"},
            )
        ).json()
        token = (await w.http.post("/v1/users/u1/tokens", headers=w.auth)).json()["access_token"]
        order = await w.order(user_id="u1")
        await w.move(order["id"], "accepted")
        assert (await w.http.get(f"/v1/orders/{order['id']}", headers=bearer(token))).is_success
        await w.http.get(
            f"/api/v1/pusher/auth?key={w.app['key']}&secret={w.app['secret']}"
            "&socket_id=1.2&channel_name=private-o-x"
        )
        url = w.runtime.gateway.url("/ws")
        screen = await w.new_app("kds")
        async with raw_client(url, ["v12.stomp"]) as kds:
            await kds.connect(screen["key"], screen["secret"])
            await kds.subscribe(f"/kds/{w.tenant_id}/{w.location_id}")
        await wait_for(lambda: len(receiver.received) >= 2, what="deliveries")

        text = ""

        async def lines_ready() -> bool:
            nonlocal text
            text += capsys.readouterr().err
            return '"ws.close"' in text and text.count('"webhook.attempt"') >= 2

        await wait_for(lines_ready, what="ws.close and webhook.attempt lines")
    finally:
        configure_logging("warning", json_lines=False)
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [x for x in lines if x["event"] == "request"]
    assert requests and all(x["request_id"] for x in requests)
    ids = [x["request_id"] for x in requests]  # ULIDs (as python-ulid spells them), unique
    assert all(str(ULID.from_str(i)) == i for i in ids) and len(set(ids)) == len(ids)
    created = [x for x in requests if x["route"] == "/v1/orders" and x["method"] == "POST"]
    assert created[0]["tenant"] == w.tenant_id and created[0]["app"] == w.app["id"]
    assert created[0]["status"] == 201
    opened = [x for x in lines if x["event"] == "ws.open" and x["protocol"] == "stomp"]
    assert opened[0]["app"] == screen["id"] and opened[0]["tenant"] == w.tenant_id
    closes = [x for x in lines if x["event"] == "ws.close" and x["protocol"] == "stomp"]
    assert closes[0]["subscriptions"] == 1
    attempts = [x for x in lines if x["event"] == "webhook.attempt"]
    assert {a["order"] for a in attempts} == {order["id"]}
    assert all(a["status"] == 200 and a["outcome"] == "delivered" for a in attempts)
    for secret in (
        w.app["secret"],
        screen["secret"],
        ADMIN,
        token,
        ep["secret"],
        "hook-query-secret",
    ):
        assert secret not in text, f"a secret reached the logs: {secret[:6]}…"


async def test_openapi_documents_auth_and_errors(w: World) -> None:
    doc = (await w.http.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["appBasic"]["scheme"] == "basic"
    assert schemes["adminBearer"]["scheme"] == schemes["userBearer"]["scheme"] == "bearer"
    assert doc["paths"]["/v1/tenants"]["post"]["security"] == [{"adminBearer": []}]
    assert {"appBasic": []} in doc["paths"]["/v1/orders"]["post"]["security"]
    problem = "application/problem+json"
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if path in ("/metrics", "/.well-known/jwks.json"):
                continue  # no error of their own
            if path == "/auth-oauth2/oauth/token":  # RFC 6749 errors, not problem+json
                assert {"400", "401", "429"} <= set(op["responses"])
                assert "application/json" in op["responses"]["400"]["content"]
                continue
            if path.startswith("/partner/v3"):  # Doshii's error body, not problem+json
                assert op["security"] == [{"doshiiJwt": []}], (method, path)
                assert {"400", "401", "404", "429"} <= set(op["responses"]), (method, path)
                assert "422" not in op["responses"], (method, path)  # Doshii says 400
                for response in (r for c, r in op["responses"].items() if c[0] in "45"):
                    shape = response["content"]["application/json"]["schema"]
                    assert shape["required"] == ["message", "code", "status"], (method, path)
                continue
            errors = {c: r for c, r in op["responses"].items() if c[0] in "45"}
            assert errors, (method, path)
            for code, response in errors.items():
                assert problem in response["content"], (method, path, code)
            if op.get("security"):
                assert {"401", "403"} <= set(errors), (method, path)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    # What the Doshii API really answers has the documented shape.
    shape = doc["paths"]["/partner/v3/orders"]["get"]["responses"]["401"]["content"]
    r = await w.http.get("/partner/v3/orders")
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/json")
    properties = shape["application/json"]["schema"]["properties"]
    assert set(r.json()) <= set(properties) and {"message", "code", "status"} <= set(r.json())
    docs = (await w.http.get("/docs")).text
    redoc = (await w.http.get("/redoc")).text
    for page in (docs, redoc):
        assert "http://" not in page and "https://" not in page  # nothing from a CDN
    assert (await w.http.get("/docs-assets/swagger-ui-bundle.js")).status_code == 200
    assert (await w.http.get("/docs-assets/redoc.standalone.js")).status_code == 200
    r = await w.http.delete("/v1/orders", headers=w.auth)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, POST"
    assert r.headers["content-type"] == problem and r.json()["code"] == "method_not_allowed"


async def test_patch_app_changes_name_grants_and_settings(w: World) -> None:
    order = await w.order()
    url = f"/v1/apps/{w.app['id']}"
    assert (await w.http.patch(url, headers=w.auth, json={"name": "x"})).status_code == 403
    bad = await w.http.patch(url, headers=w.admin, json={"settings": {"client_events": "yes"}})
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    r = await w.http.patch(
        url, headers=w.admin, json={"name": "Renamed", "settings": {"client_events": True}}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "Renamed" and body["settings"] == {"client_events": True}
    assert body["location_ids"] == [w.location_id] and body["key"] == w.app["key"]
    assert "secret" not in body
    # The grants are replaced, and this process stops serving the removed location at once.
    r = await w.http.patch(url, headers=w.admin, json={"location_ids": []})
    assert r.json()["location_ids"] == []
    assert (await w.http.get(f"/v1/orders/{order['id']}", headers=w.auth)).status_code in (
        403,
        404,
    )
    r = await w.http.patch(url, headers=w.admin, json={"settings": {"client_events": None}})
    assert r.json()["settings"] == {}
    missing = await w.http.patch("/v1/apps/app_nope", headers=w.admin, json={"name": "n"})
    assert missing.status_code == 404


def test_a_line_below_the_level_is_not_even_made(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt line's fields (the URL made safe, ...) are made only when the line is
    written; at ``warning`` the attempt is still counted."""
    from ordercast import metrics
    from ordercast.delivery import observe
    from ordercast.ports import Claimed, Outcome

    msg = Claimed(
        id="msg_1",
        endpoint_id="ep_1",
        order_id="ord_1",
        event_id="evt_1",
        seq=1,
        wire_type="order.note",
        body=b"{}",
        attempts=0,
        trigger="scheduled",
        url="https://hooks.example.com/x?token=secret",
        secret="whsec_x",
        old_secrets=[],
        failing_since=None,
        max_concurrency=1,
        dialect="ordercast",
        app_id="app_1",
        auth_key=None,
        auth_token=None,
    )
    outcome = Outcome(
        message_id="msg_1",
        endpoint_id="ep_1",
        attempt_id="att_1",
        attempt=1,
        trigger="scheduled",
        url=msg.url,
        at="2026-01-01T00:00:00.000000Z",
        webhook_timestamp=1,
        status_code=204,
        delivered=True,
        reason="",
        latency_ms=1.0,
        response_body=None,
        message_status="delivered",
        next_attempt_at=None,
        disable_endpoint=None,
        now=1.0,
    )

    def counted() -> float:
        labels = {"outcome": "delivered", "dialect": "ordercast"}
        value = metrics.REGISTRY.get_sample_value("ordercast_webhook_deliveries_total", labels)
        return value or 0.0

    try:
        configure_logging("warning", json_lines=True)
        capsys.readouterr()
        before = counted()
        made: list[str] = []
        monkeypatch.setattr(observe, "safe_url", lambda url: made.append(url) or url)
        observe.delivery_attempt(msg, outcome)
        assert made == [] and '"webhook.attempt"' not in capsys.readouterr().err
        assert counted() == before + 1
        configure_logging("info", json_lines=True)
        observe.delivery_attempt(msg, outcome)
        assert made == [msg.url] and '"webhook.attempt"' in capsys.readouterr().err
    finally:
        configure_logging("warning", json_lines=False)
