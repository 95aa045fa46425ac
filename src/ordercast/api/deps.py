"""Request dependencies: the runtime, and who is calling."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request

from ordercast.domain.access import Principal
from ordercast.errors import Unauthorized
from ordercast.logs import bind_principal
from ordercast.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a hop per request.
    return runtime_of(request)


async def get_principal(request: Request) -> Principal:
    return await authenticate(runtime_of(request), request.headers.get("authorization"))


async def authenticate(runtime: Runtime, header: str | None) -> Principal:
    """Who sent this ``Authorization`` header (raises ``Unauthorized``); the request's log
    line names its tenant and app."""
    principal = await _authenticate(runtime, header)
    bind_principal(principal)
    return principal


async def _authenticate(runtime: Runtime, header: str | None) -> Principal:
    if not header:
        raise Unauthorized(
            "missing Authorization header: use HTTP Basic key:secret (apps) or "
            "Bearer <token> (admin, users)"
        )
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "basic":
        try:
            key, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthorized("malformed Basic credentials") from exc
        if not sep:
            raise Unauthorized("Basic credentials must be key:secret")
        return await runtime.directory.authenticate_basic(key, secret)
    if scheme == "bearer" and value:
        return await runtime.directory.authenticate_bearer(value)
    raise Unauthorized("unsupported Authorization scheme; use Basic or Bearer")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
