"""The one table mapping ordercast errors to HTTP problem+json responses.

The database failing is not the caller's mistake: a refused or lost connection
(``StorageUnavailable``) or a SQLite file locked by another process past the busy timeout
(``StorageBusy``) is a 503 with ``Retry-After`` (the request changed nothing: send it
again); any other ``StorageError`` is an internal error (500, logged).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from ordercast import errors as e
from ordercast import metrics

log = logging.getLogger("ordercast.api")

PROBLEM = "application/problem+json"

#: Seconds a client is asked to wait before retrying while the database is unreachable.
STORAGE_RETRY_AFTER = 5
STORAGE_DETAIL = "the database cannot be reached right now; try again"

STATUS: dict[type[e.OrdercastError], int] = {
    e.ValidationError: 422,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.AuthError: 401,
    e.NotFound: 404,
    e.InvalidTransition: 409,
    e.WrongPhase: 409,
    e.Conflict: 409,
    e.RateLimited: 429,
    e.ProtocolError: 400,
    e.ConfigError: 500,
}


def status_of(exc: e.OrdercastError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def storage_down(exc: e.OrdercastError) -> bool:
    """Whether ``exc`` is the database unreachable or locked: a 503 with ``Retry-After``
    (logged here; ``exc.detail``, the driver's words with host and port, is not sent).
    Endpoints with their own error shape (the Pusher ones) ask this first; any other
    ``StorageError`` is re-raised for the app's handler (500)."""
    if isinstance(exc, e.TRY_AGAIN_LATER):
        log.warning("storage unavailable: %s", exc.detail)
        return True
    if isinstance(exc, e.StorageError):
        raise exc
    return False


def storage_unavailable(exc: e.StorageError) -> JSONResponse:
    """The problem+json 503 for a database that cannot be reached or written now."""
    log.warning("storage unavailable: %s", exc.detail)
    response = problem(503, exc.code, exc.title, STORAGE_DETAIL)
    response.headers["retry-after"] = str(STORAGE_RETRY_AFTER)
    return response


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:ordercast:error:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    headers = {"WWW-Authenticate": 'Basic realm="ordercast", Bearer'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


_PATTERNS: dict[str, re.Pattern[str]] = {}


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route serves at ``path`` (a 405's ``Allow``): the router stops
    at the first route whose path matches, so that route's own list can be short."""
    methods: set[str] = set()
    for route in iter_route_contexts(getattr(app, "routes", ())):
        route_methods, template = route.methods, route.path
        if not route_methods or not template:
            continue
        pattern = _PATTERNS.get(template)
        if pattern is None:
            pattern = _PATTERNS[template] = compile_path(template)[0]
        if pattern.match(path):
            methods.update(route_methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(e.OrdercastError)
    async def _ordercast(_req: Request, exc: e.OrdercastError) -> JSONResponse:
        if isinstance(exc, e.TRY_AGAIN_LATER):
            return storage_unavailable(exc)
        if isinstance(exc, e.StorageError):  # the database failed: nothing for the client
            return await _unexpected(_req, exc)
        status = status_of(exc)
        if status == 401:
            metrics.AUTH_FAILURES.labels("http").inc()
        elif status == 429:
            metrics.RATE_LIMITED.labels("http").inc()
        response = problem(status, exc.code, exc.title, exc.detail, **exc.fields)
        if isinstance(exc, e.RateLimited):
            response.headers["retry-after"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                position = err.get("loc", ("body", "?"))[-1]
                errors.append(
                    {"field": "body", "message": f"not valid JSON (error at character {position})"}
                )
            else:
                field = _where(tuple(err.get("loc", ())))
                errors.append({"field": field, "message": err.get("msg", "invalid")})
        detail = "; ".join(f"{x['field']}: {x['message']}" for x in errors[:5])
        return problem(422, "validation_error", "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            413: "payload_too_large",
            422: "validation_error",
        }
        code = codes.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        detail = str(exc.detail)
        if exc.status_code == 405:
            allowed = allowed_methods(req.app, req.url.path)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
                detail = f"{req.method} is not allowed here; use {', '.join(allowed)}"
        titles = {413: "Content too large", 422: "Invalid request"}
        title = titles.get(exc.status_code, str(exc.detail))
        response = problem(exc.status_code, code, title, detail)
        response.headers.update(headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal_error", "Internal error", "an unexpected error occurred")
