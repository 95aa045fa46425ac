"""Behind a balancer the failed-login limits see each client, not the balancer.

``ordercast run`` believes ``X-Forwarded-For`` from ``ORDERCAST_TRUSTED_PROXIES`` (loopback by
default) on the HTTP port, as the gateway port does (tests/security/test_login_limits.py): a
device behind nginx that keeps failing with an app key blocks that key for itself only, not for
every device of the restaurant chain that reaches ordercast through the same nginx.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.live import ADMIN, Ordercast, running

LIMIT = 3


@pytest.fixture(params=[{}, {"ORDERCAST_TRUSTED_PROXIES": ""}], ids=["loopback", "none"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Ordercast]:
    env = {"ORDERCAST_LOGIN_MAX_FAILURES": str(LIMIT), **request.param}
    with running(tmp_path, "proxies", **env) as node:
        yield node


def test_each_client_behind_the_proxy_is_limited_on_its_own(server: Ordercast) -> None:
    trusted = server.env.get("ORDERCAST_TRUSTED_PROXIES") != ""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=server.base, timeout=10) as http:
        tenant = http.post("/v1/tenants", headers=admin, json={"name": "T"}).json()
        app = http.post(
            "/v1/apps",
            headers=admin,
            json={"tenant_id": tenant["id"], "name": "KDS", "kind": "kds"},
        ).json()

        def orders(forwarded_for: str, secret: str) -> int:
            r = http.get(
                "/v1/orders",
                auth=(app["key"], secret),
                headers={"X-Forwarded-For": forwarded_for},
            )
            return r.status_code

        for _ in range(LIMIT):
            assert orders("203.0.113.7", "wrong") == 401
        assert orders("203.0.113.7", app["secret"]) == 429
        # Another device behind the same proxy: its own address when the proxy is trusted,
        # the proxy's (already blocked) when it is not.
        assert orders("198.51.100.9", app["secret"]) == (200 if trusted else 429)
