"""A shortcut past FastAPI's routing and dependency solving for the hot order commands.

Why: ``POST /v1/orders/{order_id}/notes`` (and the other order commands) spend more of
their server CPU in FastAPI than in ordercast: the router walks the routes of each
included router in turn, then matches again inside the one it selected (FastAPI 0.165),
and ``solve_dependencies`` walks the two dependencies, the path parameter and the body
with its general machinery. Measured in process (the ASGI app driven directly): the
event loop's CPU per note went from ~630 to ~390 µs with this shortcut.

What it does, for the routes listed in :data:`ordercast.api.orders.FAST_COMMANDS` only:
match the path with the route's own regex, read the body, parse it as FastAPI does
(``json.loads``), authenticate exactly as the ``PrincipalDep`` dependency does, validate
the body with the route's pydantic model, call the SAME endpoint function with the same
arguments, and serialize its result with FastAPI's own ``serialize_response`` for that
route. Exceptions from the endpoint go to the app's exception handlers (the same MRO
lookup as Starlette's ``ExceptionMiddleware``); anything else propagates to the
``ServerErrorMiddleware`` as it would from the router.

Anything unusual is left to FastAPI, untouched: another method, a ``root_path``, an
enabled FastAPI telemetry, a request body size limit, a content type other than exactly
``application/json``, an empty or invalid body, failed authentication or validation.
Nothing has happened yet at that point (authentication only reads), so FastAPI answers
with its usual error, receiving the body we read through a replaying ``receive``. So a
request gets the same response either way; ``tests/test_h1_fastpath.py`` compares them.

It sits inside the metrics middleware (``scope["route"]`` is set as the router would) and
outside Starlette's ``ExceptionMiddleware``.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute, serialize_response
from pydantic import BaseModel
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordercast.api.deps import authenticate, get_principal, get_runtime, runtime_of

_JSON_TYPE = "application/json"
_JSON = _JSON_TYPE.encode()


@dataclass(frozen=True, slots=True)
class _FastRoute:
    route: APIRoute
    endpoint: Callable[..., Any]
    model: type[BaseModel]
    body_name: str
    principal_name: str | None
    runtime_name: str | None
    status_code: int


def fast_route(route: APIRoute) -> _FastRoute:
    """Check that ``route`` has the one shape the shortcut handles (path parameters that
    are plain strings, one required pydantic body, the principal and runtime dependencies,
    the default JSON response) and describe it; ``ValueError`` otherwise."""
    d = route.dependant
    problems = []
    if d.query_params or d.header_params or d.cookie_params:
        problems.append("query, header or cookie parameters")
    if len(d.body_params) != 1 or route.body_field is None:
        problems.append("not exactly one body parameter")
    if any(
        p.field_info.annotation is not str or route.param_convertors[p.name].regex != "[^/]+"
        for p in d.path_params
    ):
        problems.append("a path parameter that is not a plain str")
    names: dict[Any, str | None] = {get_principal: None, get_runtime: None}
    for dep in d.dependencies:
        if dep.call not in names or dep.dependencies or dep.name is None:
            problems.append(f"the dependency {dep.call!r}")
        else:
            names[dep.call] = dep.name
    special = (
        d.request_param_name,
        d.websocket_param_name,
        d.http_connection_param_name,
        d.response_param_name,
        d.background_tasks_param_name,
        d.security_scopes_param_name,
    )
    if any(special):
        problems.append("a Request/Response/BackgroundTasks parameter")
    if route.response_field is None or not isinstance(route.response_class, DefaultPlaceholder):
        problems.append("not the default JSON response")
    if route._embed_body_fields:
        problems.append("an embedded body")
    if not inspect.iscoroutinefunction(route.endpoint):
        problems.append("a synchronous endpoint")
    model: type[BaseModel] | None = None
    if route.body_field is not None:
        annotation = route.body_field.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        if not route.body_field.field_info.is_required():
            problems.append("an optional body")
    if model is None:
        problems.append("a body that is not one pydantic model")
    if problems:
        raise ValueError(f"{route.path}: no fast path for {', '.join(problems)}")
    assert model is not None
    hints = typing.get_type_hints(route.endpoint)
    if hints.get(d.body_params[0].name) != model:
        raise ValueError(f"{route.path}: the body annotation is not {model.__name__}")
    return _FastRoute(
        route=route,
        endpoint=route.endpoint,
        model=model,
        body_name=d.body_params[0].name,
        principal_name=names[get_principal],
        runtime_name=names[get_runtime],
        status_code=route.status_code or 200,
    )


def routes_for(app: FastAPI, endpoints: Iterable[Callable[..., Any]]) -> list[APIRoute]:
    """The app's routes whose endpoint is one of ``endpoints`` (each must be found)."""
    wanted = list(endpoints)
    found: dict[Any, APIRoute] = {}

    def walk(routes: Iterable[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute) and route.endpoint in wanted:
                found.setdefault(route.endpoint, route)
            original = getattr(route, "original_router", None)  # FastAPI's included router
            if original is not None:
                walk(original.routes)

    walk(app.router.routes)
    missing = [e.__name__ for e in wanted if e not in found]
    if missing:
        raise ValueError(f"no route for {', '.join(missing)}")
    return [found[e] for e in wanted]


class CommandFastPath:
    """Pure ASGI middleware; see the module docstring. ``api`` is the FastAPI app (its
    state, exception handlers and routes), ``endpoints`` the endpoint functions to serve."""

    def __init__(self, app: ASGIApp, api: FastAPI, endpoints: Iterable[Callable[..., Any]]):
        self.app = app
        self.routes = [fast_route(r) for r in routes_for(api, endpoints)]
        self.methods = frozenset(m for f in self.routes for m in (f.route.methods or ()))
        handlers = api.exception_handlers
        self._type_handlers = {
            k: v for k, v in handlers.items() if isinstance(k, type) and k is not Exception
        }
        self._status_handlers = {
            k: v for k, v in handlers.items() if isinstance(k, int) and k != 500
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in self.methods
            or scope.get("root_path")
            or "fastapi.telemetry" in scope
            or MAX_BODY_SIZE_SCOPE_KEY in scope
        ):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        for fast in self.routes:
            match = fast.route.path_regex.match(path)
            if match is not None:
                break
        else:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in (fast.route.methods or ()):
            await self.app(scope, receive, send)
            return
        await self._serve(fast, match.groupdict(), scope, receive, send)

    async def _serve(
        self,
        fast: _FastRoute,
        path_params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        content_type = authorization = None
        for name, value in scope["headers"]:
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
        if content_type != _JSON:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        chunks = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        arguments: dict[str, Any] = dict(path_params)
        try:
            if messages[-1]["type"] != "http.request":
                raise ValueError("the client went away")
            body = json.loads(b"".join(chunks))  # starlette's Request.json()
            runtime = runtime_of(Request(scope))  # as the RuntimeDep dependency
            principal = await authenticate(runtime, authorization)
            arguments[fast.body_name] = fast.model.model_validate(body)
        except Exception:
            # FastAPI answers (its error for this request), reading the same body.
            await self.app(scope, _replay(messages, receive), send)
            return
        if fast.principal_name:
            arguments[fast.principal_name] = principal
        if fast.runtime_name:
            arguments[fast.runtime_name] = runtime
        # What the router puts in the scope (the metrics middleware reads "route").
        scope["route"] = fast.route
        scope["endpoint"] = fast.endpoint
        scope["path_params"] = {**scope.get("path_params", {}), **path_params}
        route = fast.route
        try:
            raw = await fast.endpoint(**arguments)
            content = await serialize_response(
                field=route.response_field,
                response_content=raw,
                include=route.response_model_include,
                exclude=route.response_model_exclude,
                by_alias=route.response_model_by_alias,
                exclude_unset=route.response_model_exclude_unset,
                exclude_defaults=route.response_model_exclude_defaults,
                exclude_none=route.response_model_exclude_none,
                dump_json=True,
            )
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            if is_async_callable(handler):
                response = await handler(Request(scope, receive, send), exc)
            else:
                response = await run_in_threadpool(handler, Request(scope, receive, send), exc)
            if response is None:
                return
        else:
            response = Response(content, status_code=fast.status_code, media_type=_JSON_TYPE)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Any:
        """The handler Starlette's ``ExceptionMiddleware`` would call for ``exc``."""
        if isinstance(exc, HTTPException) and exc.status_code in self._status_handlers:
            return self._status_handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in self._type_handlers:
                return self._type_handlers[cls]
        return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
