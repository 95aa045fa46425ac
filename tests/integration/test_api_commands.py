"""The order commands as plain Starlette endpoints (api/commands.py) answer exactly as
the FastAPI routes declared for them in api/orders.py.

Two runtimes with the same deterministic clock and ids run the same requests, one app as
served (the Starlette endpoints first) and one with those endpoints removed, so FastAPI's
routes answer: every response (status, headers, body), the stored events and the request
metrics must be the same.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ordercast import metrics
from ordercast.api.commands import COMMANDS, CommandRoute
from ordercast.app import create_app
from ordercast.runtime import Runtime
from ordercast.settings import Settings
from support.world import basic, make_channel_app

J = {"content-type": "application/json"}


class StepClock:
    def __init__(self) -> None:
        self.t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def now(self) -> datetime:
        self.t += timedelta(milliseconds=1)
        return self.t


class CountingIds:
    """``ports.Ids`` from one counter (ids, secrets and uuids); :meth:`restart` rewinds."""

    def __init__(self) -> None:
        self.counter = itertools.count()

    def restart(self) -> None:
        self.counter = itertools.count()

    def new_id(self, prefix: str = "") -> str:
        return f"{prefix}{next(self.counter):026d}"

    def new_secret(self, prefix: str, nbytes: int = 24) -> str:
        return f"{prefix}secret{next(self.counter)}"

    def uuid4(self) -> str:
        return str(uuid.UUID(int=next(self.counter)))


@pytest.fixture
def deterministic() -> CountingIds:
    return CountingIds()


def _http_counts() -> dict[tuple[str, ...], float]:
    out = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name in (
                "ordercast_http_requests_total",
                "ordercast_http_request_seconds_count",
            ):
                out[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return out  # type: ignore[return-value]


Request = tuple[str, str, dict[str, str], bytes | None]


def _requests(oid: str, auth: dict[str, str], other: dict[str, str], admin: str) -> list[Request]:
    notes = f"/v1/orders/{oid}/notes"
    base = f"/v1/orders/{oid}"
    aj = {**auth, **J}
    return [
        ("POST", notes, aj, b'{"text": "Dave is making your sandwich"}'),
        ("POST", notes, aj, json.dumps({"text": "caf\u00e9 \u2615 \U0001f354"}).encode()),
        (
            "POST",
            notes,
            {**auth, "content-type": "application/json; charset=utf-8"},
            b'{"text":"a"}',
        ),
        ("POST", notes, {**auth, "content-type": "application/vnd.x+json"}, b'{"text": "b"}'),
        ("POST", notes, {**auth, "content-type": "APPLICATION/JSON"}, b'{"text": "c"}'),
        ("POST", notes, {**auth, "content-type": "text/plain"}, b'{"text": "plain"}'),
        ("POST", notes, auth, b'{"text": "no content type"}'),
        ("POST", notes, aj, b'{"text": ""}'),
        ("POST", notes, aj, b'{"text": "x", "extra": 1}'),
        ("POST", notes, aj, b'{"text": 5}'),
        ("POST", notes, aj, b'{"text": '),
        ("POST", notes, aj, b"[1, 2]"),
        ("POST", notes, aj, b"null"),
        ("POST", notes, aj, b""),
        ("POST", notes, aj, b'{"text": NaN}'),
        ("POST", notes, J, b'{"text": "no auth"}'),
        ("POST", notes, {**basic("nokey", "x"), **J}, b'{"text": "unknown key"}'),
        ("POST", notes, {"authorization": "Basic !!!", **J}, b'{"text": "bad basic"}'),
        ("POST", notes, {"authorization": "Digest x", **J}, b'{"text": "scheme"}'),
        ("POST", notes, {"authorization": f"Bearer {admin}", **J}, b'{"text": "admin"}'),
        ("POST", notes, {"authorization": "Bearer nope", **J}, b'{"text": "bad bearer"}'),
        ("POST", notes, {**other, **J}, b'{"text": "another tenant"}'),
        ("POST", notes, {"authorization": "Bearer nope", **J}, b'{"text": '),
        ("POST", "/v1/orders/ord_missing/notes", aj, b'{"text": "missing order"}'),
        ("POST", "/v1/orders//notes", aj, b'{"text": "empty id"}'),
        ("POST", notes + "/", aj, b'{"text": "slash"}'),
        ("GET", notes, auth, None),
        ("PUT", notes, aj, b'{"text": "put"}'),
        ("POST", f"{base}/transitions", aj, b'{"to": "accepted"}'),
        ("POST", f"{base}/transitions", aj, b'{"to": "submitted"}'),
        ("POST", f"{base}/transitions", aj, b'{"to": "nonsense"}'),
        (
            "POST",
            f"{base}/transitions",
            aj,
            b'{"to": "preparing", "occurred_at": "2026-01-02T03:00:00"}',
        ),
        ("POST", f"{base}/transitions", aj, b'{"to": "ready", "occurred_at": "yesterday"}'),
        ("POST", f"{base}/confirmation", aj, b'{"confirmation": 1}'),
        ("POST", f"{base}/confirmation", aj, b'{"confirmation": 2, "adjustment": {"time": 0}}'),
        ("POST", f"{base}/notifications", aj, b'{"type": "info", "message": "on the way"}'),
        ("POST", f"{base}/cancellation", aj, b'{"by": "martians"}'),
        ("POST", f"{base}/cancellation", aj, b'{"reason": "changed mind", "request_only": true}'),
        ("POST", f"{base}/cancellation", aj, b'{"reason": "sold out"}'),
        ("POST", f"{base}/transitions", aj, b'{"to": "accepted"}'),
        ("POST", notes, aj, b'{"text": "after the end"}'),
    ]


def _delivery_requests(
    oid: str, auth: dict[str, str], other: dict[str, str], admin: str
) -> list[Request]:
    """A courier job (``{did}``: the id the first one gets) and its statuses."""
    start = f"/v1/orders/{oid}/deliveries"
    status = "/v1/deliveries/{did}/status"
    aj = {**auth, **J}
    return [
        ("POST", start, J, b""),
        ("POST", start, {**other, **J}, b""),
        ("POST", start, aj, b'{"provider": 5}'),
        ("POST", start, aj, b'{"provider": "x", "extra": 1}'),
        ("POST", start, {**auth, "content-type": "text/plain"}, b'{"provider": "x"}'),
        ("POST", start, aj, b'{"provider": '),
        ("POST", "/v1/orders/ord_missing/deliveries", aj, b""),
        ("POST", start, auth, b""),  # no body at all: a job, provider unknown
        ("POST", start, aj, b"null"),
        ("POST", start, aj, b'{"provider": "rush-couriers"}'),
        ("GET", start, auth, None),
        ("POST", status, aj, b'{"status": "courier_confirmed"}'),
        ("POST", status, aj, b'{"status": 5}'),
        ("POST", status, aj, b'{"nope": 1}'),
        ("POST", status, aj, b""),
        ("POST", status, aj, b"[]"),
        ("POST", status, {**auth, "content-type": "text/plain"}, b'{"status": "x"}'),
        ("POST", status, J, b'{"status": "courier_picked_up"}'),
        ("POST", status, {**other, **J}, b'{"status": "courier_picked_up"}'),
        ("POST", status, {"authorization": f"Bearer {admin}", **J}, b'{"location": {"lat": 1}}'),
        ("POST", status, aj, b'{"eta": "2026-01-02T03:30:00", "location": {"lat": 1.5}}'),
        ("POST", status, aj, b'{"eta": "soon"}'),
        ("POST", status, aj, b'{"status": "courier_picked_up"}'),
        ("POST", status, aj, b'{"status": "courier_dropped_off", "proofDelivery": "iVBOR"}'),
        ("POST", status, aj, b'{"status": "courier_dropped_off", "proofDelivery": ""}'),
        ("POST", status, aj, b'{"status": "nonsense"}'),
        ("POST", "/v1/deliveries/dlv_missing/status", aj, b'{"status": "courier_confirmed"}'),
        ("POST", "/v1/deliveries//status", aj, b'{"status": "courier_confirmed"}'),
        ("PUT", status, aj, b'{"status": "courier_confirmed"}'),
    ]


def _without_command_routes(app: Any) -> None:
    app.router.routes = [r for r in app.router.routes if not isinstance(r, CommandRoute)]


async def _run(tmp: Path, fast: bool, ids: CountingIds) -> dict[str, Any]:
    ids.restart()
    settings = Settings(database_url=f"sqlite:///{tmp}/db.sqlite", admin_token="admin-token")
    rt = await Runtime.open(settings, clock=StepClock(), ids=ids)
    try:
        app = create_app(rt)
        if not fast:
            _without_command_routes(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            admin = {"authorization": "Bearer admin-token"}
            apps = []
            for name in ("A", "B"):
                tenant = (await http.post("/v1/tenants", headers=admin, json={"name": name})).json()
                location = (
                    await http.post(
                        "/v1/locations",
                        headers=admin,
                        json={"tenant_id": tenant["id"], "name": "L"},
                    )
                ).json()
                app_body = (
                    await http.post(
                        "/v1/apps",
                        headers=admin,
                        json={
                            "tenant_id": tenant["id"],
                            "name": "Channel",
                            "kind": "channel",
                            "location_ids": [location["id"]],
                        },
                    )
                ).json()
                apps.append((location["id"], basic(app_body["key"], app_body["secret"])))
            (location_id, auth), (_, other) = apps
            order = await http.post(
                "/v1/orders",
                headers=auth,
                json={
                    "location_id": location_id,
                    "items": [{"name": "Burger", "quantity": 2, "unit_price": 899}],
                },
            )
            assert order.status_code == 201, order.text
            oid = order.json()["id"]
            second = await http.post(
                "/v1/orders",
                headers=auth,
                json={
                    "location_id": location_id,
                    "type": "delivery",
                    "items": [{"name": "Fries", "quantity": 1, "unit_price": 349}],
                },
            )
            assert second.status_code == 201, second.text
            oid2 = second.json()["id"]
            r = await http.post(
                f"/v1/orders/{oid2}/transitions", headers=auth, json={"to": "accepted"}
            )
            assert r.status_code == 200, r.text
            before = _http_counts()
            answers = []
            requests = _requests(oid, auth, other, "admin-token")
            requests += _delivery_requests(oid2, auth, other, "admin-token")
            did = ""
            for method, path, headers, content in requests:
                path = path.replace("{did}", did)
                r = await http.request(method, path, headers=headers, content=content)
                if r.status_code == 201 and not did:
                    did = r.json()["id"]
                # Every header but the request id (new for each request).
                kept = [(k, v) for k, v in r.headers.multi_items() if k != "x-request-id"]
                answers.append((method, path, r.status_code, kept, r.content))
            assert did
            after = _http_counts()
            events = (await http.get(f"/v1/orders/{oid}/events", headers=auth)).json()
            events2 = (await http.get(f"/v1/orders/{oid2}/events", headers=auth)).json()
        deltas = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)}
        return {
            "answers": answers,
            "events": events,
            "events2": events2,
            "metrics": deltas,
        }
    finally:
        await rt.close()


async def test_same_answers_from_the_starlette_endpoints_and_fastapi(
    tmp_path: Path, deterministic: CountingIds, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = []
    original = CommandRoute.handle

    async def counting(self: CommandRoute, *args: Any) -> None:
        served.append(self.path)
        await original(self, *args)

    monkeypatch.setattr(CommandRoute, "handle", counting)
    (tmp_path / "fast").mkdir()
    (tmp_path / "slow").mkdir()
    fast = await _run(tmp_path / "fast", True, deterministic)
    taken = len(served)
    slow = await _run(tmp_path / "slow", False, deterministic)
    assert len(served) == taken  # the app without the endpoints never went through them
    assert taken > 20
    for a, b in zip(fast["answers"], slow["answers"], strict=True):
        assert a == b
    assert fast["events"] == slow["events"]
    assert len(fast["events"]["events"]) > 8
    assert fast["events2"] == slow["events2"]
    assert len(fast["events2"]["events"]) > 6  # jobs and courier statuses
    served_paths = set(served)
    assert {"/v1/orders/{order_id}/deliveries", "/v1/deliveries/{delivery_id}/status"} <= (
        served_paths
    )
    assert fast["metrics"] == slow["metrics"]
    statuses = {a[2] for a in fast["answers"]}
    assert {200, 201, 401, 403, 404, 405, 409, 422}.issubset(statuses), statuses


async def _asgi(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], messages: list[Any]
) -> Any:
    sent: list[Any] = []
    pending = list(messages)

    async def receive() -> Any:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        # A fixed request id: the response echoes it (a new one would differ per run).
        "headers": [(b"host", b"test"), (b"x-request-id", b"req-1"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
    }
    try:
        await app(scope, receive, send)
    except Exception as exc:  # what the server would see
        return ("raised", type(exc).__name__)
    return sent


async def test_chunked_bodies_and_disconnects_match(
    tmp_path: Path, deterministic: CountingIds
) -> None:
    results = []
    for fast in (True, False):
        deterministic.restart()
        (tmp_path / str(fast)).mkdir()
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/{fast}/db.sqlite", admin_token="admin-token"
        )
        rt = await Runtime.open(settings, clock=StepClock(), ids=deterministic)
        try:
            app = create_app(rt)
            if not fast:
                _without_command_routes(app)
            channel = await make_channel_app(rt)
            principal = channel.principal
            order = await rt.orders.create(
                principal,
                {"location_id": channel.location_id, "items": [{"name": "B", "quantity": 1}]},
            )
            auth = basic(channel.key, channel.secret)["Authorization"].encode()
            headers = [(b"content-type", b"application/json"), (b"authorization", auth)]
            path = f"/v1/orders/{order.id}/notes"
            chunks = [
                {"type": "http.request", "body": b'{"te', "more_body": True},
                {"type": "http.request", "body": b'xt": "in two parts"}', "more_body": False},
            ]
            gone = [{"type": "http.request", "body": b'{"te', "more_body": True}]
            twice = [
                (b"content-type", b"application/json"),
                (b"content-type", b"text/plain"),
                (b"authorization", auth),
                (b"authorization", b"Bearer nope"),
            ]
            one = [{"type": "http.request", "body": b'{"text": "x"}', "more_body": False}]
            results.append(
                [
                    await _asgi(app, path, headers, chunks),
                    await _asgi(app, path, headers, gone),
                    await _asgi(app, path, twice, one),
                    await _asgi(app, path, list(reversed(twice)), one),
                ]
            )
        finally:
            await rt.close()
    assert results[0] == results[1]
    assert results[0][0][0]["status"] == 200
    assert results[0][2][0]["status"] == 200


def test_every_command_is_documented_by_its_fastapi_route() -> None:
    app = create_app(Runtime.__new__(Runtime))
    served = [r for r in app.router.routes if isinstance(r, CommandRoute)]
    assert [r.path for r in served] == [c.path for c in COMMANDS]
    assert app.router.routes[: len(COMMANDS)] == served  # matched before FastAPI's routes
    operations = app.openapi()["paths"]
    for command in COMMANDS:
        post = operations[command.path]["post"]
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        refs = [schema] if not command.optional_body else schema["anyOf"]
        assert any(r.get("$ref", "").endswith("/" + command.model.__name__) for r in refs)
        assert post["requestBody"].get("required", False) is not command.optional_body
        assert str(command.status_code) in post["responses"]
