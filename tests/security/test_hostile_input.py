"""Findings 3 and 4 of issue 12: hostile input gets a clear 4xx, never a 500, and the
keep-alive connection survives it; request bodies are bounded."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from ordercast.app import create_app
from ordercast.runtime import Runtime
from ordercast.settings import Settings
from security.estate import Estate, stomp_subscribe
from support.pusher import serve_http

FAR_FUTURE = "9999-12-31T23:59:59-12:00"  # past year 9999 in UTC
FAR_PAST = "0001-01-01T00:00:00+01:00"  # before year 1 in UTC


def _problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    if field is not None:
        assert field in body["detail"], body
        assert any(e["field"].endswith(field) for e in body.get("errors", [])), body
    return body


async def test_out_of_range_datetimes_are_a_422_naming_the_field(estate: Estate) -> None:
    http = estate.http
    channel = estate.app("t0", "l0", "channel")
    rider = estate.app("t0", "l0", "rider")
    order = estate.order("t0", "l0", "u0")
    base = {
        "location_id": order.location_id,
        "items": [{"name": "a", "quantity": 1, "unit_price": 1}],
    }
    for value in (FAR_FUTURE, FAR_PAST):
        for field in ("required_at", "available_eta"):
            r = await http.post("/v1/orders", headers=channel.auth, json={**base, field: value})
            _problem(r, 422, field)
        r = await http.post(
            f"/v1/orders/{order.id}/transitions",
            headers=channel.auth,
            json={"to": "accepted", "occurred_at": value},
        )
        _problem(r, 422, "occurred_at")
        r = await http.get("/v1/orders", headers=channel.auth, params={"updated_since": value})
        _problem(r, 422, "updated_since")
    # A delivery, for the courier's occurred_at and eta.
    r = await http.post(f"/v1/orders/{order.id}/deliveries", headers=channel.auth, json={})
    assert r.status_code == 201, r.text
    delivery = r.json()["id"]
    for field in ("occurred_at", "eta"):
        r = await http.post(
            f"/v1/deliveries/{delivery}/status",
            headers=rider.auth,
            json={"status": "assigned", field: FAR_FUTURE},
        )
        _problem(r, 422, field)
    # Open Dining's advance-order adjustment (MM/DD/YYYY + 12-hour clock).
    r = await http.post(
        f"/v1/orders/{order.id}/confirmation",
        headers=channel.auth,
        json={"confirmation": 2, "adjustment": {"order_date": "01/01/0001", "eta": "12:00 AM"}},
    )
    assert r.status_code == 422, r.text
    # Nothing was applied: the order is as it was.
    got = (await http.get(f"/v1/orders/{order.id}", headers=channel.auth)).json()
    assert got["status"] == "submitted" and got["required_at"] is None


async def test_non_ascii_credentials_are_refused_not_500(estate: Estate) -> None:
    http = estate.http
    app = estate.app("t0", "l0", "channel")

    def basic_raw(key: str, secret: str) -> dict[str, str]:
        raw = base64.b64encode(f"{key}:{secret}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    cases: list[dict[str, Any]] = [  # header values as bytes: UTF-8 and invalid UTF-8
        basic_raw(app.key, "sécret"),
        basic_raw("clé", "sécret"),
        basic_raw("ock_\x00", "x"),
        {"Authorization": "Bearer oct_\u00fc.\u00e9".encode()},
        {"Authorization": "Bearer \u00fc\u00e9".encode()},
        {"Authorization": b"Bearer \xff\xfe"},
    ]
    for headers in cases:
        r = await http.get("/v1/orders", headers=headers)
        _problem(r, 401)
    # The Pusher auth endpoints: refused (pusher-js reads any non-200 as a refusal).
    channel = f"private-o-{estate.order('t0', 'l0', 'u0').id}"
    for params in (
        {"key": app.key, "access_token": "oct_\u00fc.\u00e9"},
        {"key": app.key, "access_token": "\ud800"},
        {"key": app.key, "secret": "s\u00e9cret"},
        {"key": "cl\u00e9", "secret": "x"},
    ):
        r = await http.post(
            "/api/v1/pusher/auth",
            headers={"content-type": "application/json"},
            content=json.dumps({**params, "socket_id": "1.2", "channel_name": channel}),
        )
        assert r.status_code == 403, (params, r.text)
    r = await http.post(
        "/pusher/auth",
        headers={"Authorization": "Bearer oct_\u00fc.x".encode()},
        data={"socket_id": "1.2", "channel_name": channel},
    )
    assert r.status_code == 403, r.text
    # STOMP CONNECT: an ERROR frame "authentication failed", not "internal server error".
    for login, passcode in (("oct_\u00fc.\u00e9", ""), ("cl\u00e9", "s\u00e9cret")):
        out = await stomp_subscribe(estate, login, passcode, "/kds/x/y")
        assert not out.connected
        assert "authentication failed" in out.capture.text, out.capture.frames
        assert "internal" not in out.capture.text


@pytest.fixture
async def live_http(estate: Estate) -> AsyncIterator[tuple[str, int]]:
    async with serve_http(estate.runtime) as port:
        yield "127.0.0.1", port


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 10)
    return status, headers, body


async def test_keep_alive_survives_bad_input(estate: Estate, live_http: tuple[str, int]) -> None:
    """One TCP connection: each hostile request gets its 4xx and the next request is still
    answered on the same connection (a 500 used to drop it)."""
    host, port = live_http
    app = estate.app("t0", "l0", "channel")
    auth = base64.b64encode(f"{app.key}:{app.secret}".encode()).decode()
    reader, writer = await asyncio.open_connection(host, port)
    bad_body = json.dumps(
        {
            "location_id": app.location_id,
            "items": [{"name": "a", "quantity": 1, "unit_price": 1}],
            "required_at": FAR_FUTURE,
        }
    ).encode()
    requests = [
        (
            b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
            + auth.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(bad_body)).encode()
            + b"\r\n\r\n"
            + bad_body,
            422,
        ),
        (
            b"GET /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer oct_\xc3\xbc.\xff\r\n\r\n",
            401,
        ),
        (
            b"GET /v1/orders?updated_since=0001-01-01T00:00:00%2B01:00 HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Basic " + auth.encode() + b"\r\n\r\n",
            422,
        ),
        (
            b"GET /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
            + auth.encode()
            + b"\r\n\r\n",
            200,
        ),
    ]
    try:
        for request, expected in requests:
            status, headers, body = await _exchange(reader, writer, request)
            assert status == expected, (status, body)
            assert headers.get("connection", "").lower() != "close", headers
        assert json.loads(body)["orders"]  # the last answer is real data
    finally:
        writer.close()


async def test_body_limit_413_without_reading_the_body(tmp_path: Any) -> None:
    """ORDERCAST_MAX_BODY_BYTES (1 MiB by default): a larger body is refused with 413
    problem+json, whether announced by Content-Length (answered before the body is sent)
    or streamed in chunks (refused once the limit is crossed)."""
    assert Settings().max_body_bytes == 1024 * 1024
    rt = await Runtime.open(
        Settings(
            database_url=f"sqlite:///{tmp_path}/db.sqlite",
            admin_token="admin-token-for-tests",
            max_body_bytes=4096,
        )
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(rt), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        # Announced: 10 MB. Only the head is sent; the answer comes without the body.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer admin-token-for-tests\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 413"), head
        assert b"application/problem+json" in head
        writer.close()
        # Chunked, no Content-Length: refused once past the limit, on every route kind
        # (the order-command shortcut, FastAPI routes, the Pusher auth endpoint).
        for path in ("/v1/orders", "/v1/orders/ord_x/notes", "/api/v1/pusher/auth", "/v1/tenants"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Authorization: Bearer admin-token-for-tests\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b'{"text": "' + b"x" * 3000
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 413"), (path, head)
            headers = head.decode().lower()
            length = int(headers.split("content-length:")[1].split("\r\n")[0])
            body = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
            assert body["status"] == 413 and body["code"] == "payload_too_large", body
            assert "4096" in body["detail"]
            writer.close()
    finally:
        server.should_exit = True
        await task
        await rt.close()


async def test_free_text_fields_are_bounded(estate: Estate) -> None:
    http = estate.http
    channel = estate.app("t0", "l0", "channel")
    big = "x" * 5000
    base: dict[str, Any] = {
        "location_id": channel.location_id,
        "items": [{"name": "a", "quantity": 1, "unit_price": 1}],
    }
    for body, field in (
        ({**base, "consumer": {"name": big}}, "consumer.name"),
        ({**base, "consumer": {"address": {"line1": big}}}, "consumer.address.line1"),
        (
            {**base, "items": [{"name": "a", "quantity": 1, "unit_price": 1, "description": big}]},
            "items.0.description",
        ),
        (
            {**base, "items": [{"name": "a", "quantity": 1, "unit_price": 1, "tags": [big]}]},
            "items.0.tags.0",
        ),
    ):
        r = await http.post("/v1/orders", headers=channel.auth, json=body)
        _problem(r, 422, field)


async def test_nul_characters_are_a_422_on_every_store(any_world: Any) -> None:
    """PostgreSQL's text type cannot hold NUL: a NUL in a path, query or JSON body used to
    reach the database and fail there (500). Refused at the edge, on SQLite and PostgreSQL."""
    w = any_world
    for method, path, body in (
        ("GET", "/v1/orders/ord%00x", None),
        ("GET", "/v1/locations/%00", None),
        ("GET", "/v1/apps/%00/endpoints", None),
        ("GET", "/v1/orders?location_id=%00", None),
        ("POST", "/v1/tenants", {"name": "a\u0000b"}),
        ("POST", "/v1/orders", {"location_id": w.location_id, "user_id": "u\u0000",
                                "items": [{"name": "a", "quantity": 1, "unit_price": 1}]}),
    ):  # fmt: skip
        headers = w.admin if path.startswith("/v1/tenants") else w.auth
        r = await w.http.request(method, path, headers=headers, json=body)
        body_out = _problem(r, 422)
        assert body_out["code"] == "validation_error" and "NUL" in body_out["detail"], r.text
