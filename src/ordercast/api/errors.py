"""The one table mapping ordercast errors to HTTP problem+json responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ordercast import errors as e

log = logging.getLogger("ordercast.api")

PROBLEM = "application/problem+json"

STATUS: dict[type[e.OrdercastError], int] = {
    e.ValidationError: 422,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.AuthError: 401,
    e.NotFound: 404,
    e.InvalidTransition: 409,
    e.WrongPhase: 409,
    e.Conflict: 409,
    e.TooOld: 410,
    e.RateLimited: 429,
    e.ProtocolError: 400,
    e.ConfigError: 500,
}


def status_of(exc: e.OrdercastError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


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


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(e.OrdercastError)
    async def _ordercast(_req: Request, exc: e.OrdercastError) -> JSONResponse:
        if isinstance(exc, e.StorageError):  # the database failed: nothing for the client
            return await _unexpected(_req, exc)
        return problem(status_of(exc), exc.code, exc.title, exc.detail, **exc.fields)

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
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        code = codes.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal_error", "Internal error", "an unexpected error occurred")
