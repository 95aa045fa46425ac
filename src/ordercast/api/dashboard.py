"""The operator console: ``/dashboard`` (a static page) and its JSON / SSE API.

Sign-in is the API's own: the admin token (``Bearer``) or an app's key and secret
(``Basic``); the page keeps them in the tab's session storage and sends them on every
request. The isolation rules are the API's (``domain.access``): an app sees its own tenant,
its granted locations, its own webhook endpoints and its own sockets; a user token is
refused. Endpoint management (attempts, dead letters, replay, secret rotation) uses the
public webhook API under ``/v1/apps/{app_id}/endpoints``.

The orders board is fed by ``GET /dashboard/api/locations/{id}/stream``, Server-Sent
Events read with ``fetch`` (so the Authorization header goes along): a ``snapshot`` of
the location's recent orders (each with its ``version``, the last ``seq``), then one
``change`` per committed order change with its new events. After a reconnect the page
gets a fresh snapshot and reads the events it missed of each order it already showed with
``GET /v1/orders/{id}/events?after_seq=<the version it had>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from ordercast import observability
from ordercast.api.deps import PrincipalDep, RuntimeDep
from ordercast.domain.access import (
    Admin,
    AppPrincipal,
    Principal,
    UserPrincipal,
    check_location_access,
)
from ordercast.domain.events import DELIVERY_STALE_UPDATE, ORDER_STALE_UPDATE
from ordercast.domain.order import Order
from ordercast.errors import Forbidden
from ordercast.logs import safe_url
from ordercast.runtime import Runtime
from ordercast.services.webhooks import endpoint_view
from ordercast.storage import console as queries
from ordercast.storage.sql import SqlStore

router = APIRouter(prefix="/dashboard", tags=["dashboard"])

STATIC = resources.files("ordercast.dashboard") / "static"
#: An event whose source time is this much older than when it was recorded is "late".
LATE_SECONDS = 60.0
HEARTBEAT_SECONDS = 15.0
SNAPSHOT_LIMIT = 200


def _operator(principal: Principal) -> Admin | AppPrincipal:
    if isinstance(principal, UserPrincipal):
        raise Forbidden("the console is for the admin token or an app's key and secret")
    return principal


def _sql(rt: Runtime) -> SqlStore:
    assert isinstance(rt.store, SqlStore)
    return rt.store


def order_card(order: Order | dict[str, Any]) -> dict[str, Any]:
    """What the board shows of an order."""
    d = order if isinstance(order, dict) else order.as_dict()
    consumer = d.get("consumer") or {}
    return {
        "id": d["id"],
        "location_id": d["location_id"],
        "status": d["status"],
        "version": d["version"],
        "type": d["type"],
        "total": d.get("total", 0),
        "items": sum(int(i.get("quantity", 1)) for i in d.get("items") or []),
        "consumer": consumer.get("name"),
        "external_order_ref": d.get("external_order_ref"),
        "created_at": d["created_at"],
        "updated_at": d["updated_at"],
        "required_at": d.get("required_at"),
    }


def _seconds_between(earlier: str, later: str) -> float:
    try:
        return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()
    except (TypeError, ValueError):
        return 0.0


def event_row(e: dict[str, Any]) -> dict[str, Any]:
    """An event as the console shows it, with ``stale`` (recorded, not applied: a lower
    rank than the current state) and ``late`` (its source time well before it arrived)."""
    return {
        "seq": e["seq"],
        "event_id": e["event_id"],
        "type": e["type"],
        "status": e["status"],
        "actor": e.get("actor"),
        "occurred_at": e["occurred_at"],
        "recorded_at": e["recorded_at"],
        "stale": e["type"] in (ORDER_STALE_UPDATE, DELIVERY_STALE_UPDATE),
        "late": _seconds_between(e["occurred_at"], e["recorded_at"]) > LATE_SECONDS,
    }


# -- the page ------------------------------------------------------------------------------


@router.get("", include_in_schema=False)
async def page() -> FileResponse:
    with resources.as_file(STATIC / "index.html") as path:
        return FileResponse(path, media_type="text/html; charset=utf-8")


def mount_assets(app: FastAPI) -> None:
    """Serve the page's scripts and styles (plain files, no build step) under
    ``/dashboard/assets``."""
    with resources.as_file(STATIC) as directory:
        app.mount("/dashboard/assets", StaticFiles(directory=directory), name="dashboard")


# -- who is signed in ----------------------------------------------------------------------


@router.get("/api/session")
async def session(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """Who is signed in and the locations they may watch."""
    who = _operator(principal)
    store = _sql(rt)
    if isinstance(who, Admin):
        return {
            "kind": "admin",
            "app": None,
            "locations": await queries.locations(store),
        }
    app = await rt.directory.get_app(who.app_id)
    return {
        "kind": "app",
        "app": {"id": app.id, "name": app.name, "kind": app.kind, "tenant_id": app.tenant_id},
        "locations": await queries.locations(
            store, tenant_id=who.tenant_id, ids=sorted(who.location_ids)
        ),
    }


# -- the orders board ----------------------------------------------------------------------


async def _location(rt: Runtime, principal: Principal, location_id: str) -> None:
    location = await rt.directory.get_location(principal, location_id)
    check_location_access(principal, location.id, location.tenant_id)


async def _snapshot(rt: Runtime, location_id: str) -> list[dict[str, Any]]:
    location = await rt.store.get_location(location_id)
    assert location is not None
    orders = await rt.store.list_orders(
        tenant_id=location.tenant_id,
        location_ids=frozenset({location_id}),
        user_id=None,
        status=None,
        updated_since=None,
        limit=SNAPSHOT_LIMIT,
    )
    return [order_card(o) for o in orders]


@router.get("/api/locations/{location_id}/orders")
async def board(location_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """The location's most recently updated orders (up to 200)."""
    _operator(principal)
    await _location(rt, principal, location_id)
    return {"orders": await _snapshot(rt, location_id)}


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.get("/api/locations/{location_id}/stream")
async def stream(location_id: str, principal: PrincipalDep, rt: RuntimeDep) -> StreamingResponse:
    """Server-Sent Events: ``snapshot`` {orders}, then ``change`` {order, events} for each
    committed change at this location; ``resync`` when the server missed bus messages (the
    page takes a fresh snapshot); a comment line every 15 s keeps proxies from closing it."""
    _operator(principal)
    await _location(rt, principal, location_id)
    listener = rt.bus.listen(1000)  # before the snapshot: no change falls in between

    async def body() -> AsyncIterator[bytes]:
        try:
            yield _sse("snapshot", {"orders": await _snapshot(rt, location_id)})
            messages = aiter(listener)
            while True:
                try:
                    message = await asyncio.wait_for(anext(messages), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                except StopAsyncIteration:
                    return
                if listener.lagged:
                    listener.lagged = False
                    yield _sse("resync", {"orders": await _snapshot(rt, location_id)})
                    continue
                if message.kind != "order":
                    continue
                order = message.payload.get("order") or {}
                if order.get("location_id") != location_id:
                    continue
                events = [event_row(e) for e in message.payload.get("events") or []]
                yield _sse("change", {"order": order_card(order), "events": events})
        finally:
            with contextlib.suppress(Exception):
                await listener.close()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# -- one order's timeline ------------------------------------------------------------------


@router.get("/api/orders/{order_id}/timeline")
async def timeline(order_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """Every event of the order with where it went: Pusher channels and sockets and STOMP
    destinations (as this node's fan-out recorded them: ``node`` says which), and each
    webhook endpoint's messages with every attempt (status, latency)."""
    who = _operator(principal)
    order = await rt.orders.get(principal, order_id)
    store = _sql(rt)
    records = await rt.store.list_events(order_id, 0, 5000)
    if isinstance(who, Admin):
        endpoint_rows = await queries.endpoints(store, tenant_id=order.tenant_id)
    else:
        endpoint_rows = await queries.endpoints(store, app_id=who.app_id)
    endpoints = {row["id"]: row for row in endpoint_rows}
    messages, attempts = await queries.order_webhooks(store, order_id, list(endpoints))
    by_message: dict[str, list[dict[str, Any]]] = {}
    for attempt in attempts:
        by_message.setdefault(attempt.pop("message_id"), []).append(attempt)
    webhooks: dict[str, list[dict[str, Any]]] = {}
    for msg in messages:
        ep = endpoints[msg["endpoint_id"]]
        webhooks.setdefault(msg["event_id"] or "", []).append(
            {
                "endpoint_id": ep["id"],
                "app_id": ep["app_id"],
                "url": safe_url(ep["url"]),
                "dialect": ep["dialect"],
                "message_id": msg["id"],
                "wire_type": msg["wire_type"],
                "status": msg["status"],
                "attempts": by_message.get(msg["id"], []),
                "last_error": msg["last_error"],
            }
        )
    fanout: dict[int, list[dict[str, Any]]] = {}
    source = observability.install(rt)
    for seq, protocol, target, sockets in source.trace.of(order_id):
        fanout.setdefault(seq, []).append(
            {"protocol": protocol, "target": target, "sockets": sockets, "node": source.node}
        )
    visible_apps = None if isinstance(who, Admin) else {who.app_id}
    events = []
    for record in records:
        row = event_row(record.to_dict())
        row["data"] = record.data
        row["live"] = fanout.get(record.seq, [])
        row["webhooks"] = [
            w
            for w in webhooks.get(record.event_id, [])
            if visible_apps is None or w["app_id"] in visible_apps
        ]
        events.append(row)
    return {"order": order_card(order), "events": events}


# -- webhook endpoints ---------------------------------------------------------------------


@router.get("/api/endpoints")
async def endpoints(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """Webhook endpoints with their health: enabled or the reason they were disabled,
    failing since, failure rate over the last day, message counts (``failed`` = dead
    letters). The admin sees every tenant's; an app its own."""
    who = _operator(principal)
    store = _sql(rt)
    rows = await queries.endpoints(store, app_id=None if isinstance(who, Admin) else who.app_id)
    app_names = await queries.apps(store, sorted({r["app_id"] for r in rows}))
    now = datetime.now().timestamp()
    out = []
    for row in rows:
        view = endpoint_view(row, now)
        view["url"] = safe_url(view["url"])
        attempts = row["attempts_24h"]
        view.update(
            app_name=(app_names.get(row["app_id"]) or {}).get("name"),
            messages=row["messages"],
            attempts_24h=attempts,
            failed_24h=row["failed_24h"],
            failure_rate_24h=round(row["failed_24h"] / attempts, 4) if attempts else None,
            last_attempt_at=row["last_attempt_at"],
            dead_letters=row["messages"].get("failed", 0),
            health=_health(view, row),
        )
        out.append(view)
    return {"endpoints": out}


def _health(view: dict[str, Any], row: dict[str, Any]) -> str:
    if not view["enabled"]:
        return "disabled"
    if view["failing_since"] is not None:
        return "failing"
    if row["failed_24h"]:
        return "degraded"
    return "healthy"


# -- connections ---------------------------------------------------------------------------


@router.get("/api/connections")
async def connections(
    principal: PrincipalDep,
    rt: RuntimeDep,
    app_id: str | None = Query(None, description="only this app (the admin)"),
) -> dict[str, Any]:
    """Pusher, STOMP and Doshii socket connections per app, their channels / destinations with
    subscriber counts, and presence members."""
    who = _operator(principal)
    if isinstance(who, Admin):
        wanted = frozenset({app_id}) if app_id else None
    else:
        wanted = frozenset({who.app_id})
    rows = await observability.install(rt).connections.connections(wanted)
    names = await queries.apps(_sql(rt), sorted({r["app_id"] for r in rows}))
    for row in rows:
        row["app_name"] = (names.get(row["app_id"]) or {}).get("name")
    return {"apps": rows}
