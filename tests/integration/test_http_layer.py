"""The HTTP layer around the services: request metrics and the Basic-auth app cache."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from ordercast import metrics
from ordercast.app import create_app
from ordercast.ports import App
from ordercast.runtime import Runtime
from ordercast.services.directory import AppCache
from ordercast.storage import schema
from ordercast.storage.sql import SqlStore
from support.world import World, basic


def _count(method: str, route: str, status: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "ordercast_http_requests_total", {"method": method, "route": route, "status": status}
    )
    return value or 0.0


def _observed(method: str, route: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "ordercast_http_request_seconds_count", {"method": method, "route": route}
    )
    return value or 0.0


async def test_request_metrics_by_route_template_method_and_status(world: World) -> None:
    w = world
    oid = (await w.order())["id"]
    notes = "/v1/orders/{order_id}/notes"
    before = (
        _count("POST", notes, "200"),
        _count("GET", "/v1/orders/{order_id}", "404"),
        _count("GET", "unmatched", "404"),
        _count("POST", notes, "401"),
        _observed("POST", notes),
    )
    r = await w.http.post(f"/v1/orders/{oid}/notes", headers=w.auth, json={"text": "hi"})
    assert r.status_code == 200, r.text
    assert (await w.http.get("/v1/orders/ord_missing", headers=w.auth)).status_code == 404
    assert (await w.http.get("/no/such/path")).status_code == 404
    assert (await w.http.post(f"/v1/orders/{oid}/notes", json={"text": "x"})).status_code == 401
    after = (
        _count("POST", notes, "200"),
        _count("GET", "/v1/orders/{order_id}", "404"),
        _count("GET", "unmatched", "404"),
        _count("POST", notes, "401"),
        _observed("POST", notes),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1, 2]
    text = (await w.http.get("/metrics")).text
    assert (
        'ordercast_http_requests_total{method="POST",route="/v1/orders/{order_id}/notes",'
        'status="200"}' in text
    )
    assert 'ordercast_http_request_seconds_bucket{le="0.005",method="POST"' in text


async def test_unhandled_error_is_a_500_problem_and_counted(runtime: Runtime) -> None:
    app = create_app(runtime)

    @app.get("/test-boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    before = _count("GET", "/test-boom", "500")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        r = await http.get("/test-boom")
    assert r.status_code == 500
    assert r.json()["code"] == "internal_error"
    assert _count("GET", "/test-boom", "500") == before + 1


# -- the Basic-auth app cache -----------------------------------------------------------


class _Lookups:
    """Counts the store's app-by-key lookups (the query the cache saves)."""

    def __init__(self, rt: Runtime) -> None:
        self.calls = 0
        self._real = rt.store.get_app_by_key

        async def counted(key: str) -> App | None:
            self.calls += 1
            return await self._real(key)

        rt.store.get_app_by_key = counted  # type: ignore[method-assign]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _set_secret(rt: Runtime, app_id: str, secret: str) -> None:
    """Rotate an app's secret behind the cache's back (as another process would)."""
    assert isinstance(rt.store, SqlStore)
    async with rt.store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.apps).where(schema.apps.c.id == app_id).values(secret=secret)
        )


async def test_basic_auth_is_cached_and_a_wrong_secret_still_refused(world: World) -> None:
    w = world
    oid = (await w.order())["id"]  # the app is cached from here on
    lookups = _Lookups(w.runtime)
    for _ in range(3):
        assert (await w.http.get(f"/v1/orders/{oid}", headers=w.auth)).status_code == 200
    assert lookups.calls == 0
    # The key is cached, the secret is still compared on every request.
    wrong = basic(w.app["key"], w.app["secret"] + "x")
    r = await w.http.get(f"/v1/orders/{oid}", headers=wrong)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert (await w.http.get(f"/v1/orders/{oid}", headers=basic(w.app["key"], ""))).status_code == 401  # fmt: skip
    assert lookups.calls == 0
    # ... and the failures did not evict or poison the entry.
    assert (await w.http.get(f"/v1/orders/{oid}", headers=w.auth)).status_code == 200
    # An unknown key is never cached: looked up every time.
    for _ in range(2):
        r = await w.http.get("/v1/orders", headers=basic("ock_unknown", "whatever"))
        assert r.status_code == 401
    assert lookups.calls == 2


async def test_auth_cache_forgets_an_app_changed_in_process(world: World) -> None:
    w = world
    rt = w.runtime
    oid = (await w.order())["id"]
    await _set_secret(rt, w.app["id"], "ocs_rotated")
    # Another process's change is seen within the TTL: until then the old entry serves.
    assert (await w.http.get(f"/v1/orders/{oid}", headers=w.auth)).status_code == 200
    # This process changed it: forget_app drops it at once.
    app = await rt.store.get_app(w.app["id"])
    assert app is not None
    rt.directory.forget_app(app)
    assert (await w.http.get(f"/v1/orders/{oid}", headers=w.auth)).status_code == 401
    rotated = basic(w.app["key"], "ocs_rotated")
    assert (await w.http.get(f"/v1/orders/{oid}", headers=rotated)).status_code == 200


async def test_auth_cache_entries_expire(world: World) -> None:
    w = world
    rt = w.runtime
    clock = _Clock()
    rt.directory.apps = AppCache(ttl=5.0, clock=clock)
    lookups = _Lookups(rt)
    oid = (await w.order())["id"]
    assert (await w.http.get(f"/v1/orders/{oid}", headers=w.auth)).status_code == 200
    assert lookups.calls == 1
    clock.now += 4.9
    assert (await w.http.get(f"/v1/orders/{oid}", headers=w.auth)).status_code == 200
    assert lookups.calls == 1
    await _set_secret(rt, w.app["id"], "ocs_elsewhere")  # rotated by another process
    clock.now += 0.2
    assert (await w.http.get(f"/v1/orders/{oid}", headers=w.auth)).status_code == 401
    assert lookups.calls == 2
    elsewhere = basic(w.app["key"], "ocs_elsewhere")
    assert (await w.http.get(f"/v1/orders/{oid}", headers=elsewhere)).status_code == 200
    assert lookups.calls == 2


def test_app_cache_is_bounded() -> None:
    clock = _Clock()
    cache = AppCache(ttl=5.0, max_entries=3, clock=clock)
    apps = [
        App(
            id=f"app_{i}",
            tenant_id="ten_1",
            name="a",
            kind="channel",
            key=f"ock_{i}",
            secret=f"ocs_{i}",
            settings={},
            created_at="2026-01-01T00:00:00Z",
        )
        for i in range(5)
    ]
    for app in apps:
        cache.put(app)
    assert len([a for a in apps if cache.get(a.key) is not None]) <= 3
    entry = cache.get("ock_4")
    assert entry is not None and entry.principal.app_id == "app_4"
    cache.forget(app_id="app_4")
    assert cache.get("ock_4") is None


async def test_pusher_auth_endpoint_shares_the_cache(world: World) -> None:
    w = world
    oid = (await w.order())["id"]
    lookups = _Lookups(w.runtime)
    for secret, status in ((w.app["secret"], 200), ("wrong", 403), (w.app["secret"], 200)):
        r = await w.http.post(
            "/api/v1/pusher/auth",
            params={"key": w.app["key"], "secret": secret},
            data={"socket_id": "1.2", "channel_name": f"private-o-{oid}"},
        )
        assert r.status_code == status, r.text
    assert lookups.calls == 0
