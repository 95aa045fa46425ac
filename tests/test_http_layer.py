"""The HTTP layer around the services: request metrics and the Basic-auth app cache."""

from __future__ import annotations

import httpx

from conftest import World
from ordercast import metrics
from ordercast.app import create_app
from ordercast.runtime import Runtime


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
