"""Webhook endpoint routes: register, list, change, rotate the secret, attempts, replay."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ordercast.api.deps import PrincipalDep, RuntimeDep
from ordercast.api.schemas import Instant, iso_or_none
from ordercast.errors import ConfigError
from ordercast.runtime import Runtime
from ordercast.services.webhooks import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_MAX_CONCURRENCY,
    WebhookService,
)

router = APIRouter(prefix="/v1/apps/{app_id}/endpoints", tags=["webhooks"])


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointIn(_In):
    url: str = Field(max_length=2048, description="http(s) URL that receives signed POSTs")
    dialect: str = Field(
        "ordercast",
        description="payload dialect: ordercast | ordatic | rbi | doshii | pusher (Pusher "
        "server webhooks about the app's channels, signed with the app key and secret)",
    )
    event_types: list[str] | None = Field(
        None,
        description="only these events: canonical types (order.accepted), the dialect's own "
        "names (order-in-kitchen), or a wildcard (order.*); omit for all",
    )
    fifo: bool = Field(False, description="deliver one message per order at a time, in seq order")
    max_concurrency: int = Field(DEFAULT_MAX_CONCURRENCY, description="requests in flight, 1-1000")
    enabled: bool = True
    description: str | None = Field(None, max_length=500)
    secret: str | None = Field(
        None, max_length=200, description="whsec_… to use; generated when omitted"
    )


class EndpointPatch(_In):
    url: str | None = Field(None, max_length=2048)
    dialect: str | None = Field(None, max_length=32)
    event_types: list[str] | None = None
    fifo: bool | None = None
    max_concurrency: int | None = None
    enabled: bool | None = None
    description: str | None = Field(None, max_length=500)


class RotateIn(_In):
    grace_seconds: int = Field(
        DEFAULT_GRACE_SECONDS, description="how long the old secret keeps signing (0-604800)"
    )
    secret: str | None = Field(
        None, max_length=200, description="whsec_… to use; generated when omitted"
    )


class ReplayIn(_In):
    since: Instant | None = Field(None, description="events recorded at or after")
    until: Instant | None = Field(None, description="events recorded before")
    order_id: str | None = Field(None, max_length=200)
    event_id: str | None = Field(None, max_length=200)
    status: list[str] | None = Field(
        None,
        description="only messages in these states (pending, delivered, failed, skipped); "
        "default all — e.g. ['failed'] redrives the dead letters",
    )


def _svc(rt: Runtime) -> WebhookService:
    if rt.webhooks is None:  # pragma: no cover - always set by Runtime.open
        raise ConfigError("webhooks are not available with this store")
    return rt.webhooks


@router.post("", status_code=201)
async def create_endpoint(
    app_id: str, body: EndpointIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Register a webhook endpoint. The response carries the signing secret, once."""
    view, secret = await _svc(rt).create_endpoint(
        principal,
        app_id,
        url=body.url,
        dialect=body.dialect,
        event_types=body.event_types,
        fifo=body.fifo,
        max_concurrency=body.max_concurrency,
        enabled=body.enabled,
        description=body.description,
        secret=body.secret,
    )
    return {**view, "secret": secret}


@router.get("")
async def list_endpoints(app_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    return {"endpoints": await _svc(rt).list_endpoints(principal, app_id)}


@router.get("/{endpoint_id}")
async def get_endpoint(
    app_id: str, endpoint_id: str, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    return await _svc(rt).get_endpoint(principal, app_id, endpoint_id)


@router.patch("/{endpoint_id}")
async def update_endpoint(
    app_id: str, endpoint_id: str, body: EndpointPatch, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Change an endpoint; ``{"enabled": true}`` re-enables one that was disabled."""
    changes = body.model_dump(exclude_unset=True)
    return await _svc(rt).update_endpoint(principal, app_id, endpoint_id, changes)


@router.delete("/{endpoint_id}", status_code=204)
async def delete_endpoint(
    app_id: str, endpoint_id: str, principal: PrincipalDep, rt: RuntimeDep
) -> Response:
    await _svc(rt).delete_endpoint(principal, app_id, endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/secret/rotate")
async def rotate_secret(
    app_id: str,
    endpoint_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    body: RotateIn | None = None,
) -> dict[str, Any]:
    """New signing secret; the old one keeps signing (a second ``v1,`` entry) for the grace
    period, so receivers can switch over without rejecting anything."""
    body = body or RotateIn()
    view, secret = await _svc(rt).rotate_secret(
        principal, app_id, endpoint_id, grace_seconds=body.grace_seconds, secret=body.secret
    )
    return {**view, "secret": secret}


@router.get("/{endpoint_id}/attempts")
async def attempts(
    app_id: str,
    endpoint_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    limit: int = Query(50, ge=1, le=500),
    before: int | None = Query(None, description="cursor: attempts older than this one"),
    message_id: str | None = None,
) -> dict[str, Any]:
    """Delivery attempts, newest first: status, latency, the first 20 KB of the response."""
    rows = await _svc(rt).attempts(
        principal, app_id, endpoint_id, limit=limit, before=before, message_id=message_id
    )
    return {"attempts": rows, "next_before": rows[-1]["cursor"] if len(rows) == limit else None}


@router.get("/{endpoint_id}/messages")
async def messages(
    app_id: str,
    endpoint_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    status: str | None = Query(None, description="pending|delivering|delivered|failed|skipped"),
    order_id: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    before: int | None = None,
) -> dict[str, Any]:
    """Messages for this endpoint, newest first; ``status=failed`` is the dead letter."""
    rows = await _svc(rt).messages(
        principal, app_id, endpoint_id, status=status, order_id=order_id, limit=limit, before=before
    )
    return {"messages": rows, "next_before": rows[-1]["cursor"] if len(rows) == limit else None}


@router.post("/{endpoint_id}/replay", status_code=202)
async def replay(
    app_id: str,
    endpoint_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    body: ReplayIn | None = None,
) -> dict[str, Any]:
    """Send events again (one event, one order, a time range, or everything), with their
    original ``webhook-id`` so receivers that already have them can skip them."""
    body = body or ReplayIn()
    count = await _svc(rt).replay(
        principal,
        app_id,
        endpoint_id,
        since=iso_or_none(body.since),
        until=iso_or_none(body.until),
        order_id=body.order_id,
        event_id=body.event_id,
        statuses=body.status,
    )
    return {"replayed": count}
