"""Pusher over HTTP: the channel-authorization endpoints and the Pusher HTTP API.

* ``GET|POST /api/v1/pusher/auth`` — Open Dining's endpoint (seed 000). ``key`` + ``secret``
  (restaurant staff: ``presence-r-{location}`` and ``private-o-{order}`` of the app's
  locations) or ``key`` + ``access_token`` (a customer: only ``private-o-{their order}``),
  plus pusher-js's ``socket_id`` and ``channel_name`` (query string or form body). Without
  ``channel_name`` it answers a user sign-in (``pusher:signin``) request.
* ``POST /pusher/auth`` and ``POST /pusher/user-auth`` — the standard endpoints, same rules,
  credentials in the ``Authorization`` header (Basic ``key:secret`` or Bearer token).
* ``/apps/{app_id}/events|batch_events|channels…|users/{id}/terminate_connections`` —
  the Pusher HTTP API, signed as the official server SDKs sign it. The app id is the
  ordercast app id, the key and secret are the app's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ordercast.api.deps import client_address, runtime_of
from ordercast.api.errors import STORAGE_DETAIL, STORAGE_RETRY_AFTER, storage_down
from ordercast.dialects.opendining import LOCATION_CHANNEL_PREFIX, ORDER_CHANNEL_PREFIX
from ordercast.domain.access import (
    Principal,
    UserPrincipal,
    check_location_access,
    check_order_access,
)
from ordercast.errors import (
    AuthError,
    Forbidden,
    NotFound,
    OrdercastError,
    RateLimited,
    Unauthorized,
    ValidationError,
)
from ordercast.gateway.pusher import PusherGateway
from ordercast.gateway.pusher.registry import AppState
from ordercast.ports import App
from ordercast.protocols.credentials import Basic, Bearer, parse_authorization, same_secret
from ordercast.protocols.logins import basic_credential, bearer_credential
from ordercast.protocols.pusher import (
    ChannelKind,
    channel_kind,
    httpapi,
    sign_channel,
    sign_user,
    validate_channel_name,
    validate_socket_id,
)
from ordercast.runtime import Runtime
from ordercast.services.directory import app_principal, plausible_id

router = APIRouter(tags=["pusher"])

_MAX_BODY = 64 * 1024


class _Staff:
    def __init__(self, app: App, user_id: str | None, name: str | None) -> None:
        self.app = app
        self.user_id = user_id
        self.name = name


class _Customer:
    """A user's access token, presented with ``app``'s key (or issued by ``app``)."""

    def __init__(self, app: App, principal: UserPrincipal) -> None:
        self.app = app
        self.principal = principal


Caller = _Staff | _Customer


def _pusher_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def _params(request: Request) -> dict[str, str]:
    """Query parameters plus a form or JSON body (pusher-js posts a form)."""
    params: dict[str, str] = {k: v for k, v in request.query_params.items()}
    if request.method == "POST":
        body = await request.body()
        if len(body) > _MAX_BODY:
            raise ValidationError("request body too large")
        ctype = request.headers.get("content-type", "")
        text = body.decode("utf-8", errors="replace")
        if "json" in ctype:
            try:
                decoded = json.loads(text) if text.strip() else {}
            except ValueError as exc:
                raise ValidationError("request body is not valid JSON") from exc
            if isinstance(decoded, dict):
                params.update({k: str(v) for k, v in decoded.items() if v is not None})
        elif text:
            params.update(dict(parse_qsl(text, keep_blank_values=True)))
    return params


async def _app_by_key(rt: Runtime, key: str | None) -> App:
    if not key:
        raise Unauthorized("missing 'key' (the app key)")
    app = await rt.directory.app_by_key(key)  # cached a few seconds; the secret is checked
    if app is None:
        raise Unauthorized("unknown app key")
    return app


async def _user_token(rt: Runtime, token: str) -> UserPrincipal:
    principal = await rt.directory.authenticate_user_token(token)
    if not isinstance(principal, UserPrincipal):
        raise Unauthorized("an app's token cannot authorize a customer; use the app's secret")
    return principal


async def _caller_from_params(
    rt: Runtime, params: Mapping[str, str], address: str | None = None
) -> Caller:
    """The caller behind ``key`` + ``secret`` or ``key`` + ``access_token``, under the
    failed-login limit of (``address``, that credential)."""
    token = params.get("access_token")
    credential = (
        bearer_credential(token)
        if token and not params.get("secret")
        else basic_credential(params.get("key") or "")
    )
    return await rt.directory.login(address, credential, lambda: _params_caller(rt, params))


async def _params_caller(rt: Runtime, params: Mapping[str, str]) -> Caller:
    app = await _app_by_key(rt, params.get("key"))
    secret = params.get("secret")
    token = params.get("access_token")
    if secret:
        if not same_secret(secret, app.secret):
            raise Unauthorized("wrong secret for this app key")
        return _Staff(app, params.get("user_id"), params.get("name"))
    if token:
        principal = await _user_token(rt, token)
        if principal.tenant_id != app.tenant_id:
            raise Forbidden("this access token belongs to another tenant than the app key")
        return _Customer(app, principal)
    raise Unauthorized("give 'secret' (restaurant staff) or 'access_token' (a customer)")


async def _caller_from_headers(rt: Runtime, request: Request, params: Mapping[str, str]) -> Caller:
    credentials = parse_authorization(request.headers.get("authorization"))
    if isinstance(credentials, Bearer):
        return await rt.directory.login(
            client_address(request),
            bearer_credential(credentials.token),
            lambda: _headers_caller(rt, request, credentials, params),
        )
    # Basic: limited in _caller_from_params
    return await _headers_caller(rt, request, credentials, params)


async def _headers_caller(
    rt: Runtime, request: Request, credentials: Basic | Bearer | None, params: Mapping[str, str]
) -> Caller:
    if isinstance(credentials, Basic):
        secret = credentials.secret if credentials.has_secret else ""
        return await _caller_from_params(
            rt, {**params, "key": credentials.key, "secret": secret}, client_address(request)
        )
    if isinstance(credentials, Bearer):
        principal = await _user_token(rt, credentials.token)
        app = await rt.directory.app_by_id(principal.app_id)
        if app is None:
            raise Unauthorized("the app that issued this token no longer exists")
        return _Customer(app, principal)
    raise Unauthorized("use Authorization: Basic key:secret (staff) or Bearer <access_token>")


async def _check_channel(rt: Runtime, caller: Caller, channel: str) -> None:
    """Raise NotFound/Forbidden unless ``caller`` may subscribe to ``channel``: the rules of
    :mod:`ordercast.domain.access`, for the caller and for the app whose key signs (the
    gateway delivers an order's events only to apps granted its location)."""
    app = app_principal(caller.app)
    who: Principal = caller.principal if isinstance(caller, _Customer) else app
    if channel.startswith(ORDER_CHANNEL_PREFIX):
        order_id = channel[len(ORDER_CHANNEL_PREFIX) :]
        order = await rt.store.get_order(order_id) if plausible_id(order_id) else None
        if order is None:
            raise NotFound(f"order {order_id} not found")
        for principal in (who, app):
            check_order_access(
                principal, order.id, order.tenant_id, order.location_id, order.user_id
            )
        return
    if channel.startswith(LOCATION_CHANNEL_PREFIX):
        if isinstance(caller, _Customer):
            raise Forbidden("restaurant channels need the restaurant's secret, not a user token")
        location_id = channel[len(LOCATION_CHANNEL_PREFIX) :]
        location = await rt.store.get_location(location_id) if plausible_id(location_id) else None
        if location is None:
            raise NotFound(f"location {location_id} not found")
        check_location_access(app, location.id, location.tenant_id)
        return
    raise Forbidden(
        f"channel {channel!r} cannot be authorized here: use private-o-{{order_id}} or "
        "presence-r-{location_id}"
    )


def _member(caller: Caller, socket_id: str) -> dict[str, Any]:
    if isinstance(caller, _Customer):
        return {"user_id": caller.principal.user_id, "user_info": {"role": "customer"}}
    user_id = caller.user_id or f"staff-{socket_id}"
    info: dict[str, Any] = {"role": "staff", "app_id": caller.app.id}
    if caller.name:
        info["name"] = caller.name[:100]
    return {"user_id": user_id, "user_info": info}


async def _authorize(rt: Runtime, caller: Caller, params: Mapping[str, str]) -> dict[str, Any]:
    socket_id = validate_socket_id(params.get("socket_id"))
    channel_name = params.get("channel_name")
    app = caller.app
    if not channel_name:  # user authentication (pusher:signin)
        member = _member(caller, socket_id)
        user = {"id": member["user_id"], "user_info": member["user_info"]}
        user_data = json.dumps(user, separators=(",", ":"))
        return {
            "auth": sign_user(app.key, app.secret, socket_id, user_data),
            "user_data": user_data,
        }
    channel = validate_channel_name(channel_name)
    kind = channel_kind(channel)
    if kind not in (ChannelKind.PRIVATE, ChannelKind.PRESENCE):
        raise Forbidden(f"channel {channel!r} is not a private or presence channel")
    await _check_channel(rt, caller, channel)
    if kind is ChannelKind.PRESENCE:
        channel_data = json.dumps(_member(caller, socket_id), separators=(",", ":"))
        auth = sign_channel(app.key, app.secret, socket_id, channel, channel_data)
        return {"auth": auth, "channel_data": channel_data}
    return {"auth": sign_channel(app.key, app.secret, socket_id, channel)}


def _auth_failure(exc: OrdercastError) -> JSONResponse:
    # pusher-js treats any non-200 as refused; 403 is what Pusher's docs use for a refusal
    # (a bad credential included); another tenant's order or location reads as 404; too
    # many failed logins is a 429 with Retry-After; the database down a 503 with it.
    headers = None
    detail = exc.detail
    if storage_down(exc):
        status = 503
        headers = {"retry-after": str(STORAGE_RETRY_AFTER)}
        detail = STORAGE_DETAIL
    elif isinstance(exc, RateLimited):
        status = 429
        headers = {"retry-after": str(exc.retry_after)}
    else:
        status = 404 if isinstance(exc, NotFound) else 403 if isinstance(exc, AuthError) else 400
    return JSONResponse(
        {"error": detail, "code": exc.code, "status": status},
        status_code=status,
        headers=headers,
    )


@router.get("/api/v1/pusher/auth")
async def opendining_auth_get(request: Request) -> JSONResponse:
    """Open Dining channel authorization over GET (the seed allows both methods)."""
    return await opendining_auth(request)


@router.post("/api/v1/pusher/auth")
async def opendining_auth(request: Request) -> JSONResponse:
    """Open Dining channel authorization: ``key`` + ``secret`` or ``key`` + ``access_token``."""
    rt = runtime_of(request)
    try:
        params = await _params(request)
        caller = await _caller_from_params(rt, params, client_address(request))
        return JSONResponse(await _authorize(rt, caller, params))
    except OrdercastError as exc:
        return _auth_failure(exc)


@router.post("/pusher/auth")
async def standard_auth(request: Request) -> JSONResponse:
    """Standard Pusher channel authorization, credentials in the Authorization header."""
    rt = runtime_of(request)
    try:
        params = await _params(request)
        caller = await _caller_from_headers(rt, request, params)
        return JSONResponse(await _authorize(rt, caller, params))
    except OrdercastError as exc:
        return _auth_failure(exc)


@router.post("/pusher/user-auth")
async def standard_user_auth(request: Request) -> JSONResponse:
    """Standard Pusher user authentication (``pusher:signin``)."""
    rt = runtime_of(request)
    try:
        params = dict(await _params(request))
        params.pop("channel_name", None)
        caller = await _caller_from_headers(rt, request, params)
        return JSONResponse(await _authorize(rt, caller, params))
    except OrdercastError as exc:
        return _auth_failure(exc)


# --------------------------------------------------------------------------------------------
# The Pusher HTTP API


async def _signed(request: Request, app_id: str | None) -> tuple[PusherGateway, AppState, bytes]:
    rt = runtime_of(request)
    gateway = rt.pusher
    query = parse_qsl(request.url.query, keep_blank_values=True)
    # The signed auth_key names the app. pusher-http-python's unprefixed
    # terminate_connections has no app id, and its app id check allows digits only: any
    # numeric id is an alias. Any other id must be that app's own: a request signed by one
    # app for another app's id reads as not found, whether that id exists or not.
    key = httpapi.auth_key_of(query)
    state = await gateway.channels.app_state(key) if plausible_id(key) else None
    if state is None or not (app_id is None or app_id.isdigit() or app_id == state.app.id):
        raise NotFound(f"app {app_id} not found")
    body = await request.body()
    httpapi.verify_request(
        method=request.method,
        path=request.url.path,
        query=query,
        body=body,
        app_key=state.app.key,
        secret=state.app.secret,
        now=time.time(),
    )
    return gateway, state, body


def _api_error(exc: OrdercastError) -> JSONResponse:
    if storage_down(exc):
        response = _pusher_error(503, STORAGE_DETAIL)
        response.headers["retry-after"] = str(STORAGE_RETRY_AFTER)
        return response
    if isinstance(exc, Unauthorized):
        return _pusher_error(401, exc.detail)
    if isinstance(exc, NotFound):
        return _pusher_error(404, exc.detail)
    if isinstance(exc, Forbidden):
        return _pusher_error(403, exc.detail)
    if exc.fields.get("too_large"):
        return _pusher_error(413, exc.detail)
    return _pusher_error(400, exc.detail)


@router.post("/apps/{app_id}/events")
async def trigger(app_id: str, request: Request) -> JSONResponse:
    try:
        gateway, state, body = await _signed(request, app_id)
        event = httpapi.parse_trigger(body)
    except OrdercastError as exc:
        return _api_error(exc)
    (info,) = await gateway.cluster.trigger(state, [event])  # every node of the cluster
    return JSONResponse({"channels": info} if event.info else {})


@router.post("/apps/{app_id}/batch_events")
async def trigger_batch(app_id: str, request: Request) -> JSONResponse:
    try:
        gateway, state, body = await _signed(request, app_id)
        events = httpapi.parse_batch(body)
    except OrdercastError as exc:
        return _api_error(exc)
    results = await gateway.cluster.trigger(state, events)
    if any(event.info for event in events):
        return JSONResponse(
            {
                "batch": [
                    info.get(ev.channels[0], {}) for info, ev in zip(results, events, strict=True)
                ]
            }
        )
    return JSONResponse({})


@router.get("/apps/{app_id}/channels")
async def channels(app_id: str, request: Request) -> JSONResponse:
    try:
        gateway, state, _ = await _signed(request, app_id)
        query = httpapi.parse_channels_query(parse_qsl(request.url.query))
    except OrdercastError as exc:
        return _api_error(exc)
    out: dict[str, Any] = {}
    for name in sorted(await gateway.cluster.channels(state.app.id)):  # the whole cluster
        if query.filter_by_prefix and not name.startswith(query.filter_by_prefix):
            continue
        out[name] = await gateway.cluster.channel_info(state, name, query.info)
    return JSONResponse({"channels": out})


@router.get("/apps/{app_id}/channels/{channel_name}")
async def channel(app_id: str, channel_name: str, request: Request) -> JSONResponse:
    try:
        gateway, state, _ = await _signed(request, app_id)
        info = httpapi.parse_channel_info(channel_name, parse_qsl(request.url.query))
    except OrdercastError as exc:
        return _api_error(exc)
    count = await gateway.cluster.registry.subscription_count(state.app.id, channel_name)
    body: dict[str, Any] = {"occupied": count > 0}
    body.update(await gateway.cluster.channel_info(state, channel_name, info))
    return JSONResponse(body)


@router.get("/apps/{app_id}/channels/{channel_name}/users")
async def channel_users(app_id: str, channel_name: str, request: Request) -> JSONResponse:
    try:
        gateway, state, _ = await _signed(request, app_id)
        httpapi.validate_users_channel(channel_name)
    except OrdercastError as exc:
        return _api_error(exc)
    members = await gateway.cluster.members(state.app.id, channel_name)
    return JSONResponse({"users": [{"id": uid} for uid in members]})


@router.post("/apps/{app_id}/users/{user_id}/terminate_connections")
async def terminate(app_id: str, user_id: str, request: Request) -> JSONResponse:
    try:
        gateway, state, _ = await _signed(request, app_id)
    except OrdercastError as exc:
        return _api_error(exc)
    await gateway.cluster.terminate(state, user_id)
    return JSONResponse({})


@router.post("/users/{user_id}/terminate_connections", include_in_schema=False)
async def terminate_unprefixed(user_id: str, request: Request) -> JSONResponse:
    """pusher-http-python 3.3.x posts here, without the ``/apps/{id}`` prefix."""
    try:
        gateway, state, _ = await _signed(request, None)
    except OrdercastError as exc:
        return _api_error(exc)
    await gateway.cluster.terminate(state, user_id)
    return JSONResponse({})
