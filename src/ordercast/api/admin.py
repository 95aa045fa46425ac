"""Admin and app-management routes: tenants, locations, apps, user tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ordercast.api.deps import PrincipalDep, RuntimeDep
from ordercast.api.schemas import AppIn, AppPatch, LocationIn, LocationPatch, TenantIn, TokenIn
from ordercast.domain.access import require_admin, require_app
from ordercast.services.directory import app_dict

router = APIRouter(prefix="/v1")


@router.post("/tenants", status_code=201, tags=["admin"])
async def create_tenant(body: TenantIn, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    require_admin(principal)
    tenant = await rt.directory.create_tenant(body.name)
    return {"id": tenant.id, "name": tenant.name, "created_at": tenant.created_at}


@router.post("/locations", status_code=201, tags=["admin"])
async def create_location(
    body: LocationIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    require_admin(principal)
    location = await rt.directory.create_location(
        tenant_id=body.tenant_id, name=body.name, timezone=body.timezone, settings=body.settings
    )
    return location.to_dict()


@router.get("/locations/{location_id}", tags=["admin"])
async def get_location(location_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    return (await rt.directory.get_location(principal, location_id)).to_dict()


@router.patch("/locations/{location_id}", tags=["admin"])
async def update_location(
    location_id: str, body: LocationPatch, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    require_admin(principal)
    location = await rt.directory.update_location(
        location_id, name=body.name, timezone=body.timezone, settings=body.settings
    )
    return location.to_dict()


@router.post("/apps", status_code=201, tags=["admin"])
async def create_app(body: AppIn, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    require_admin(principal)
    created = await rt.directory.create_app(
        tenant_id=body.tenant_id,
        name=body.name,
        kind=body.kind,
        location_ids=body.location_ids,
        settings=body.settings,
    )
    # The secret is shown here, once.
    return {**app_dict(created.app), "secret": created.secret}


@router.patch("/apps/{app_id}", tags=["admin"])
async def update_app(
    app_id: str, body: AppPatch, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Change an app's name, granted locations (the list replaces the grants) or settings
    (merged key by key; `null` removes a key), e.g. `{"settings": {"client_events": true}}`.
    Its key, secret and kind stay. New Pusher connections to this process use the new
    settings at once (other processes within 30 seconds); open ones keep theirs."""
    require_admin(principal)
    app = await rt.directory.update_app(
        app_id, name=body.name, location_ids=body.location_ids, settings=body.settings
    )
    rt.pusher.channels.refresh_app(app)
    return app_dict(app)


@router.post("/users/{user_id}/tokens", status_code=201, tags=["users"])
async def issue_token(
    user_id: str, principal: PrincipalDep, rt: RuntimeDep, body: TokenIn | None = None
) -> dict[str, Any]:
    app = require_app(principal, "channel")
    ttl = (body.ttl if body and body.ttl else None) or rt.settings.access_token_ttl
    token, expires_in = rt.directory.issue_user_token(app, user_id, ttl)
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "user_id": user_id,
    }
