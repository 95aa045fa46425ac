"""Order routes: create, read, list, move through the lifecycle, courier jobs, events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Query, Response

from ordercast.api import commands
from ordercast.api.commands import command_body
from ordercast.api.deps import PrincipalDep, RuntimeDep
from ordercast.api.schemas import (
    CancellationIn,
    ConfirmationIn,
    CourierStatusIn,
    DeliveryIn,
    Instant,
    NoteIn,
    NotificationIn,
    OrderIn,
    TransitionIn,
    iso_or_none,
)
from ordercast.errors import ValidationError
from ordercast.services.orders import order_resource

router = APIRouter(prefix="/v1", tags=["orders"])


@router.post("/orders", status_code=201)
async def create_order(body: OrderIn, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    order = await rt.orders.create(principal, body.spec())
    return order_resource(order, rt.settings.base_url, copy=False)


@router.get("/orders")
async def list_orders(
    principal: PrincipalDep,
    rt: RuntimeDep,
    location_id: str | None = None,
    status: str | None = None,
    updated_since: Instant | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    orders = await rt.orders.list_orders(
        principal,
        location_id=location_id,
        status=status,
        updated_since=iso_or_none(updated_since),
        limit=limit,
    )
    return {"orders": [order_resource(o, rt.settings.base_url, copy=False) for o in orders]}


@router.get("/orders/{order_id}")
async def get_order(order_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    order = await rt.orders.get(principal, order_id)
    return order_resource(order, rt.settings.base_url, copy=False)


@router.get("/orders/{order_id}/events")
async def order_events(
    order_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    after_seq: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    order, events = await rt.orders.events(principal, order_id, after_seq, limit)
    last = events[-1].seq if events else after_seq
    return {
        "order_id": order.id,
        "version": order.version,
        "events": [e.to_dict() for e in events],
        "next_after_seq": last,
        "has_more": last < order.version,
    }


# The order commands. ``api/commands.py`` serves them (plain Starlette endpoints placed before
# these routes); these FastAPI declarations run the same commands and give the OpenAPI
# document its operations.


@router.post("/orders/{order_id}/transitions")
async def transition(
    order_id: str, body: TransitionIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    return command_body(rt, await commands.transition(rt, principal, order_id, body))


@router.post("/orders/{order_id}/confirmation")
async def confirmation(
    order_id: str, body: ConfirmationIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    return command_body(rt, await commands.confirm(rt, principal, order_id, body))


@router.post("/orders/{order_id}/notifications")
async def notification(
    order_id: str, body: NotificationIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    return command_body(rt, await commands.notify(rt, principal, order_id, body))


@router.post("/orders/{order_id}/notes")
async def note(
    order_id: str, body: NoteIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    return command_body(rt, await commands.note(rt, principal, order_id, body))


@router.post("/orders/{order_id}/cancellation")
async def cancellation(
    order_id: str, body: CancellationIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    return command_body(rt, await commands.cancel(rt, principal, order_id, body))


@router.post("/orders/{order_id}/deliveries", status_code=201)
async def start_delivery(
    order_id: str, principal: PrincipalDep, rt: RuntimeDep, body: DeliveryIn | None = None
) -> dict[str, Any]:
    return await commands.start_delivery(rt, principal, order_id, body)


@router.post("/deliveries/{delivery_id}/status", tags=["deliveries"])
async def courier_status(
    delivery_id: str, body: CourierStatusIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    return await commands.courier_status(rt, principal, delivery_id, body)


def _location_header(doshii: str | None, plain: str | None, order_location: str) -> None:
    given = doshii or plain
    if given is not None and given != order_location:
        raise ValidationError(
            "the location header does not match the order's location", field="doshii-location-id"
        )


@router.post("/orders/{order_id}/subscription", tags=["subscriptions"])
async def subscribe(
    order_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    doshii_location_id: str | None = Header(default=None),
    x_location_id: str | None = Header(default=None),
) -> dict[str, Any]:
    order = await rt.orders.get(principal, order_id)
    _location_header(doshii_location_id, x_location_id, order.location_id)
    order = await rt.orders.subscribe(principal, order_id)
    return order_resource(order, rt.settings.base_url, subscribed=True, copy=False)


@router.delete("/orders/{order_id}/subscription", status_code=204, tags=["subscriptions"])
async def unsubscribe(
    order_id: str,
    principal: PrincipalDep,
    rt: RuntimeDep,
    doshii_location_id: str | None = Header(default=None),
    x_location_id: str | None = Header(default=None),
) -> Response:
    order = await rt.orders.get(principal, order_id)
    _location_header(doshii_location_id, x_location_id, order.location_id)
    await rt.orders.unsubscribe(principal, order_id)
    return Response(status_code=204)
