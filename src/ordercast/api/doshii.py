"""The Doshii Partner API v3 subset at ``/partner/v3`` (``doshii-partner-node-sdk``).

A Doshii partner points the SDK at ordercast with ``apiUrlOverride:
'http://HOST:8080/partner/v3'`` and changes nothing else. Every call is an ordinary
ordercast use case (the same OrderService, the same event log, the same outbox): an order
created or changed here fans out to every other dialect, and the other way round.

- Auth: ``Authorization: Bearer <JWT>`` as the SDK signs it (``services/doshii.py``).
- ``doshii-location-id``: the location, as ordercast's location id. Doshii's "hashed
  location id" is the id a partner copies from its Doshii dashboard; with ordercast the
  partner copies ordercast's ``loc_…`` id instead (``ordercast demo``, ``POST
  /v1/locations``), and the app must be granted that location.
- Shapes and vocabulary: ``dialects/doshii.py`` (camelCase Order resource, status tables,
  the obfuscated ``version``).
- Errors: Doshii's statuses (400 bad input, 401, 403, 404, 409 stale version) with a JSON
  body ``{"message", "code", "status", "errors"?}`` — never problem+json on this prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError as PydanticValidationError

from ordercast import errors as e
from ordercast.api.deps import client_address, runtime_of
from ordercast.api.errors import STORAGE_DETAIL, STORAGE_RETRY_AFTER, status_of, storage_down
from ordercast.api.schemas import OrderIn
from ordercast.delivery.doshii import DoshiiWebhooks
from ordercast.dialects import doshii as dialect
from ordercast.domain import decide as d
from ordercast.domain.access import AppPrincipal
from ordercast.domain.isotime import iso, parse_iso
from ordercast.domain.order import Order
from ordercast.ports import OrderQuery
from ordercast.runtime import Runtime
from ordercast.services.doshii import DoshiiAuth, DoshiiCaller
from ordercast.services.orders import order_resource

PREFIX = "/partner/v3"
LOCATION_HEADER = "doshii-location-id"

# Doshii answers bad input with 400 (ordercast's own API says 422).
_STATUS_OVERRIDES: dict[type[e.OrdercastError], int] = {e.ValidationError: 400}


def doshii_error(
    status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "code": code, "status": status}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


def _status(exc: e.OrdercastError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS_OVERRIDES:
            return _STATUS_OVERRIDES[cls]
    return status_of(exc)


def _field_errors(exc: RequestValidationError | PydanticValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        out.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    return out


class DoshiiRoute(APIRoute):
    """Answers this prefix's failures in Doshii's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except e.TRY_AGAIN_LATER as exc:
                storage_down(exc)  # logged
                response = doshii_error(503, exc.code, STORAGE_DETAIL)
                response.headers["retry-after"] = str(STORAGE_RETRY_AFTER)
                return response
            except e.OrdercastError as exc:
                if isinstance(exc, e.StorageError):
                    raise  # the app's handler: an internal error, logged
                response = doshii_error(_status(exc), exc.code, exc.detail)
                if isinstance(exc, e.RateLimited):
                    response.headers["retry-after"] = str(exc.retry_after)
                return response
            except RequestValidationError as exc:
                errors = _field_errors(exc)
                detail = "; ".join(f"{x['field']}: {x['message']}" for x in errors[:5])
                return doshii_error(400, "validation_error", detail, errors)

        return route


router = APIRouter(prefix=PREFIX, tags=["doshii"], route_class=DoshiiRoute)


# -- dependencies -------------------------------------------------------------------------


async def _rt(request: Request) -> Runtime:
    return runtime_of(request)


RtDep = Annotated[Runtime, Depends(_rt)]


async def _caller(request: Request) -> DoshiiCaller:
    rt = runtime_of(request)
    auth = rt.doshii_auth or DoshiiAuth(rt.directory, rt.clock)
    return await auth.from_header(request.headers.get("authorization"), client_address(request))


CallerDep = Annotated[DoshiiCaller, Depends(_caller)]
LocationHeader = Annotated[str | None, Header(alias=LOCATION_HEADER)]


async def _location(rt: Runtime, caller: DoshiiCaller, location_id: str | None) -> str:
    """The ``doshii-location-id``: another tenant's or an unknown location is 404, one of
    the tenant's that the app is not granted 403 (domain/access.py)."""
    if not location_id:
        raise e.ValidationError(f"the {LOCATION_HEADER} header is required", field=LOCATION_HEADER)
    await rt.orders.check_location(caller.principal, location_id)
    return location_id


async def _order(rt: Runtime, caller: DoshiiCaller, location_id: str, order_id: str) -> Order:
    order = await rt.orders.get(caller.principal, order_id)
    if order.location_id != location_id:
        raise e.NotFound(f"order {order_id} not found at location {location_id}")
    return order


def _resource(rt: Runtime, order: Order) -> dict[str, Any]:
    return dialect.order_resource(order_resource(order, rt.settings.base_url, copy=False))


def _expect_version(version: Any) -> Callable[[Order], None]:
    if not isinstance(version, str) or not version:
        raise e.ValidationError(
            "version is required: the order's current version (from GET /orders/{id})",
            field="version",
        )

    def check(order: Order) -> None:
        if dialect.version_token(order.id, order.version) != version:
            raise e.StaleVersion(
                f"version '{version}' is not the current version of order {order.id}; "
                "GET the order and retry with its version"
            )

    return check


def _webhooks(rt: Runtime) -> DoshiiWebhooks:
    if rt.doshii_webhooks is None:  # pragma: no cover - always set by Runtime.open
        raise e.ConfigError("webhooks are not available with this store")
    return rt.doshii_webhooks


def _str_or_none(body: dict[str, Any], key: str, limit: int = 2000) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise e.ValidationError(f"{key} must be a string of at most {limit} characters", field=key)
    return value


# The SDK's LogsRequest: who made a change, kept on the event and shown by GET …/logs.
_LOG_FIELDS = ("employeeName", "employeePosRef", "deviceRef", "deviceName", "area")


def _log(body: dict[str, Any]) -> dict[str, str] | None:
    log = body.get("log")
    if log is None:
        return None
    if not isinstance(log, dict):
        raise e.ValidationError("log must be an object", field="log")
    return {k: v for k in _LOG_FIELDS if (v := _str_or_none(log, k, 200)) is not None}


# -- orders -------------------------------------------------------------------------------


@router.post("/orders", status_code=201)
async def create_order(
    caller: CallerDep,
    rt: RtDep,
    body: Annotated[dict[str, Any], Body()],
    location_id: LocationHeader = None,
) -> dict[str, Any]:
    """Create an order (the SDK's ``order.createOrder``); the app is subscribed to it."""
    spec = dialect.create_spec(body, await _location(rt, caller, location_id))
    try:
        parsed = OrderIn.model_validate(spec)
    except PydanticValidationError as exc:
        errors = _field_errors(exc)
        detail = "; ".join(f"{x['field']}: {x['message']}" for x in errors[:5])
        raise e.ValidationError(detail) from exc
    order = await rt.orders.create(caller.principal, parsed.spec())
    return _resource(rt, order)


def _epoch(value: int | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return iso(datetime.fromtimestamp(value, UTC))
    except (OverflowError, OSError, ValueError) as exc:
        raise e.ValidationError(f"{field} must be epoch seconds", field=field) from exc


def _direction(value: str | None, field: str) -> bool | None:
    if value is None:
        return None
    if value not in ("asc", "desc"):
        raise e.ValidationError(f"{field} must be 'asc' or 'desc'", field=field)
    return value == "desc"


@router.get("/orders")
async def list_orders(
    caller: CallerDep,
    rt: RtDep,
    location_id: LocationHeader = None,
    status: str | None = None,
    pos_ref: Annotated[str | None, Query(alias="posRef")] = None,
    external_order_ref: Annotated[str | None, Query(alias="externalOrderRef")] = None,
    created_from: Annotated[int | None, Query(alias="from")] = None,
    created_to: Annotated[int | None, Query(alias="to")] = None,
    sort: str | None = None,
    updated_from: Annotated[int | None, Query(alias="updatedFrom")] = None,
    updated_to: Annotated[int | None, Query(alias="updatedTo")] = None,
    updated_sort: Annotated[str | None, Query(alias="updatedSort")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The SDK's ``order.getAll``: ``{count, offset, limit, rows}``, newest first unless
    ``sort=asc``; ``updatedSort`` sorts by last change instead. (``posFrom``/``posTo``:
    ordercast keeps no POS creation time, so they are not accepted.)"""
    by_updated = _direction(updated_sort, "updatedSort")
    by_created = _direction(sort, "sort")
    query = OrderQuery(
        location_ids=frozenset({await _location(rt, caller, location_id)}),
        statuses=dialect.status_filter(status) if status else None,
        external_order_ref=external_order_ref,
        pos_ref=pos_ref,
        created_from=_epoch(created_from, "from"),
        created_to=_epoch(created_to, "to"),
        updated_from=_epoch(updated_from, "updatedFrom"),
        updated_to=_epoch(updated_to, "updatedTo"),
        sort_by="updated_at" if by_updated is not None else "created_at",
        descending=by_updated if by_updated is not None else (by_created is not False),
        offset=offset,
        limit=limit,
    )
    total, orders = await rt.orders.query(caller.principal, query)
    return {
        "count": total,
        "offset": offset,
        "limit": limit,
        "rows": [_resource(rt, o) for o in orders],
    }


@router.get("/orders/{order_id}")
async def get_order(
    order_id: str, caller: CallerDep, rt: RtDep, location_id: LocationHeader = None
) -> dict[str, Any]:
    order = await _order(rt, caller, await _location(rt, caller, location_id), order_id)
    return _resource(rt, order)


@router.put("/orders/{order_id}")
async def update_order(
    order_id: str,
    caller: CallerDep,
    rt: RtDep,
    body: Annotated[dict[str, Any], Body()],
    location_id: LocationHeader = None,
) -> dict[str, Any]:
    """Change the order's status (``order.update``): ``{status, version, mealPhase?,
    log?, rejectionReason?, rejectionCode?}``. A ``version`` that is not the order's
    current one is 409 (nothing changes); a status Doshii's table maps to a move the
    lifecycle refuses (e.g. out of ``complete``) is 409 too."""
    loc = await _location(rt, caller, location_id)
    await _order(rt, caller, loc, order_id)
    expect = _expect_version(body.get("version"))
    target, by = dialect.status_move(body.get("status"))
    phase = _str_or_none(body, "mealPhase", 200)
    extra: dict[str, Any] = {}
    if by is not None:
        extra["by"] = by
    log = _log(body)
    if log:
        extra["log"] = log
    code = _str_or_none(body, "rejectionCode", 32)
    if code is not None:
        extra["code"] = code
    cmd = d.Transition(to=target, reason=_str_or_none(body, "rejectionReason"), extra=extra)
    result = await rt.orders.execute(caller.principal, order_id, cmd, expect=expect)
    order = result.order
    if phase and phase != order.phase:
        order = (await rt.orders.note(caller.principal, order_id, text=phase)).order
    return _resource(rt, order)


_DELIVERY_DETAILS = {
    "deliveryOrderId": "delivery_order_id",
    "displayId": "display_id",
    "phase": "phase",
    "failedReason": "failed_reason",
    "driverName": "driver_name",
    "driverPhone": "driver_phone",
    "trackingUrl": "tracking_url",
}


@router.put("/orders/{order_id}/delivery")
async def update_delivery(
    order_id: str,
    caller: CallerDep,
    rt: RtDep,
    body: Annotated[dict[str, Any], Body()],
    location_id: LocationHeader = None,
) -> dict[str, Any]:
    """``order.updateDelivery``: the courier's progress (``status`` delivering / delivered
    / failed → canonical picked_up / delivered / failed, with the order coupled as for any
    courier) and its details (driver, tracking URL, ETA, …). The first call starts the
    order's courier job. ``version`` as for ``PUT /orders/{id}``."""
    loc = await _location(rt, caller, location_id)
    order = await _order(rt, caller, loc, order_id)
    expect: Callable[[Order], None] | None = _expect_version(body.get("version"))
    status = body.get("status")
    if status is not None and status not in dialect.DELIVERY_INBOUND:
        raise e.ValidationError(
            f"unknown delivery status '{status}'; use one of: "
            f"{', '.join(dialect.DELIVERY_INBOUND)}",
            field="status",
        )
    details = {
        ours: value
        for theirs, ours in _DELIVERY_DETAILS.items()
        if (value := _str_or_none(body, theirs, 500)) is not None
    }
    eta_raw = _str_or_none(body, "deliveryEta", 64)
    try:
        eta = iso(parse_iso(eta_raw)) if eta_raw else None
    except ValueError as exc:
        raise e.ValidationError(
            "deliveryEta must be an ISO 8601 time", field="deliveryEta"
        ) from exc
    if order.deliveries:
        delivery_id = sorted(order.deliveries.values(), key=lambda x: x.created_at)[-1].id
    else:
        _result, delivery_id = await rt.orders.start_delivery(
            caller.principal, order_id, provider="doshii", expect=expect
        )
        expect = None  # checked by the start
    result = await rt.orders.courier_update(
        caller.principal,
        delivery_id,
        status=dialect.DELIVERY_INBOUND[status] if status is not None else None,
        eta=eta,
        details=details or None,
        expect=expect,
    )
    return _resource(rt, result.order)


@router.post("/orders/{order_id}/subscription")
async def subscribe(
    order_id: str, caller: CallerDep, rt: RtDep, location_id: LocationHeader = None
) -> dict[str, Any]:
    """Register interest in an order (seed 003): its changes reach this app's Doshii
    webhooks and socket. Answers the Order resource."""
    await _order(rt, caller, await _location(rt, caller, location_id), order_id)
    return _resource(rt, await rt.orders.subscribe(caller.principal, order_id))


@router.delete("/orders/{order_id}/subscription")
async def unsubscribe(
    order_id: str, caller: CallerDep, rt: RtDep, location_id: LocationHeader = None
) -> dict[str, Any]:
    await _order(rt, caller, await _location(rt, caller, location_id), order_id)
    removed = await rt.orders.unsubscribe(caller.principal, order_id)
    return {
        "message": f"unsubscribed from order {order_id}"
        if removed
        else f"was not subscribed to order {order_id}"
    }


@router.get("/orders/{order_id}/logs")
async def order_logs(
    order_id: str, caller: CallerDep, rt: RtDep, location_id: LocationHeader = None
) -> list[dict[str, Any]]:
    """The order's event log, oldest first, one entry per event (who, what, when, the
    status and version after it, and the ``log`` a partner sent with its change)."""
    await _order(rt, caller, await _location(rt, caller, location_id), order_id)
    _order_now, events = await rt.orders.events(caller.principal, order_id, 0, 1000)
    return [dialect.log_entry(ev.to_dict()) for ev in events]


# -- webhooks -----------------------------------------------------------------------------


def _app(caller: DoshiiCaller) -> AppPrincipal:
    return caller.principal


@router.post("/webhooks", status_code=201)
async def register_webhook(
    caller: CallerDep,
    rt: RtDep,
    body: Annotated[dict[str, Any], Body()],
    location_id: LocationHeader = None,
) -> dict[str, Any]:
    url = _str_or_none(body, "webhookUrl")
    if not url:
        raise e.ValidationError("webhookUrl is required", field="webhookUrl")
    return await _webhooks(rt).register(
        _app(caller),
        event=str(body.get("event") or ""),
        url=url,
        key=_str_or_none(body, "authenticationKey"),
        token=_str_or_none(body, "authenticationToken"),
        location_id=location_id,
    )


@router.get("/webhooks")
async def list_webhooks(
    caller: CallerDep, rt: RtDep, location_id: LocationHeader = None
) -> list[dict[str, Any]]:
    return await _webhooks(rt).list(_app(caller), location_id)


@router.get("/webhooks/{event}")
async def get_webhook(event: str, caller: CallerDep, rt: RtDep) -> dict[str, Any]:
    return await _webhooks(rt).get(_app(caller), event)


@router.put("/webhooks/{event}")
async def update_webhook(
    event: str, caller: CallerDep, rt: RtDep, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    return await _webhooks(rt).update(
        _app(caller),
        event,
        url=_str_or_none(body, "webhookUrl"),
        key=_str_or_none(body, "authenticationKey"),
        token=_str_or_none(body, "authenticationToken"),
    )


@router.delete("/webhooks/{event}")
async def delete_webhook(
    event: str, caller: CallerDep, rt: RtDep, location_id: LocationHeader = None
) -> dict[str, Any]:
    await _webhooks(rt).delete(_app(caller), event, location_id)
    return {"message": f"webhook for '{event}' removed"}


@router.api_route(
    "/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def not_here(path: str, request: Request) -> JSONResponse:
    """Anything else under the prefix: Doshii's 404, not problem+json."""
    return doshii_error(
        404, "not_found", f"{request.method} {PREFIX}/{path} is not part of ordercast's Doshii API"
    )
