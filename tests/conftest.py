"""Shared fixtures: runtimes on SQLite and PostgreSQL, an in-process HTTP client, factories.

PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379) tests skip when
the service is unreachable, unless ORDERCAST_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ordercast.app import create_app
from ordercast.runtime import Runtime
from ordercast.settings import Settings

PG_HOST = os.environ.get("ORDERCAST_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ORDERCAST_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ORDERCAST_TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("ORDERCAST_TEST_PG_DB", "test")
REDIS_URL = os.environ.get("ORDERCAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("ORDERCAST_REQUIRE_SERVICES") == "1"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    if reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and ORDERCAST_REQUIRE_SERVICES=1")
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    need_service("PostgreSQL", PG_HOST, PG_PORT)
    import asyncio

    import asyncpg

    name = f"ordercast_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin_dsn = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis_url() -> str:
    need_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ordercast.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/ordercast.db"


@pytest.fixture
async def runtime(sqlite_url: str) -> AsyncIterator[Runtime]:
    rt = await Runtime.open(Settings(database_url=sqlite_url, admin_token="admin-token-for-tests"))
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
async def any_runtime(database_url: str) -> AsyncIterator[Runtime]:
    """The same tests on SQLite and on PostgreSQL."""
    rt = await Runtime.open(
        Settings(database_url=database_url, admin_token="admin-token-for-tests")
    )
    try:
        yield rt
    finally:
        await rt.close()


def basic(key: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class ChannelApp:
    """A tenant with one UTC location and a channel app granted it, made through the
    directory service (no HTTP)."""

    location_id: str
    app_id: str
    key: str
    secret: str
    principal: Any  # the app's AppPrincipal, as HTTP Basic auth would give it


async def make_channel_app(rt: Runtime, name: str = "C") -> ChannelApp:
    tenant = await rt.directory.create_tenant("T")
    location = await rt.directory.create_location(
        tenant_id=tenant.id, name="L", timezone="UTC", settings={}
    )
    created = await rt.directory.create_app(
        tenant_id=tenant.id, name=name, kind="channel", location_ids=[location.id]
    )
    principal = await rt.directory.authenticate_basic(created.app.key, created.secret)
    return ChannelApp(location.id, created.app.id, created.app.key, created.secret, principal)


@dataclass
class World:
    """One tenant with one location and a channel app, plus helpers."""

    http: httpx.AsyncClient
    runtime: Runtime
    tenant_id: str
    location_id: str
    app: dict[str, Any]

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.runtime.admin_token)

    @property
    def auth(self) -> dict[str, str]:
        return basic(self.app["key"], self.app["secret"])

    async def new_app(self, kind: str, location_ids: list[str] | None = None) -> dict[str, Any]:
        r = await self.http.post(
            "/v1/apps",
            headers=self.admin,
            json={
                "tenant_id": self.tenant_id,
                "name": f"{kind} app",
                "kind": kind,
                "location_ids": [self.location_id] if location_ids is None else location_ids,
            },
        )
        assert r.status_code == 201, r.text
        app: dict[str, Any] = r.json()
        return app

    async def order(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "location_id": self.location_id,
            "type": "delivery",
            "items": [
                {
                    "pos_id": "burger",
                    "name": "Cheeseburger",
                    "quantity": 2,
                    "unit_price": 899,
                    "options": [{"name": "Extras", "variants": [{"name": "Bacon", "price": 150}]}],
                },
                {"pos_id": "fries", "name": "Fries", "quantity": 1, "unit_price": 350},
            ],
            "consumer": {"name": "Ada", "phone": "+15550100"},
        }
        body.update(overrides)
        r = await self.http.post("/v1/orders", headers=self.auth, json=body)
        assert r.status_code == 201, r.text
        order: dict[str, Any] = r.json()
        return order

    async def move(self, order_id: str, to: str, **extra: Any) -> httpx.Response:
        return await self.http.post(
            f"/v1/orders/{order_id}/transitions", headers=self.auth, json={"to": to, **extra}
        )


async def make_world(rt: Runtime) -> AsyncIterator[World]:
    app = create_app(rt)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        admin = bearer(rt.admin_token)
        tenant = (await http.post("/v1/tenants", headers=admin, json={"name": "T"})).json()
        location = (
            await http.post(
                "/v1/locations",
                headers=admin,
                json={"tenant_id": tenant["id"], "name": "L", "timezone": "America/New_York"},
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
        yield World(http, rt, tenant["id"], location["id"], app_body)


@pytest.fixture
async def world(runtime: Runtime) -> AsyncIterator[World]:
    async for w in make_world(runtime):
        yield w


@pytest.fixture
async def any_world(any_runtime: Runtime) -> AsyncIterator[World]:
    async for w in make_world(any_runtime):
        yield w
