"""A tenant, a location and a channel app to test against: made over in-process HTTP
(:func:`make_world`) or through the directory service (:func:`make_channel_app`)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from ordercast.app import create_app
from ordercast.runtime import Runtime


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
