"""Request dependencies: the runtime, and who is calling."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ordercast.domain.access import Principal
from ordercast.errors import Unauthorized
from ordercast.logs import bind_principal
from ordercast.protocols.credentials import Basic, Bearer, parse_authorization
from ordercast.protocols.logins import basic_credential, bearer_credential
from ordercast.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a hop per request.
    return runtime_of(request)


def client_address(request: Request) -> str:
    """The peer's address: the key of the failed-login limits."""
    return request.client.host if request.client is not None else "unknown"


async def get_principal(request: Request) -> Principal:
    return await authenticate(
        runtime_of(request), request.headers.get("authorization"), client_address(request)
    )


async def authenticate(
    runtime: Runtime, header: str | None, address: str | None = None, *, record: bool = True
) -> Principal:
    """Who sent this ``Authorization`` header (raises ``Unauthorized``); the request's log
    line names its tenant and app. With the client's ``address``, under the failed-login
    limit (``RateLimited`` while blocked; a failure is counted when ``record``)."""
    principal = await _authenticate(runtime, header, address, record=record)
    bind_principal(principal)
    return principal


async def _authenticate(
    runtime: Runtime, header: str | None, address: str | None, *, record: bool
) -> Principal:
    if not header:
        raise Unauthorized(
            "missing Authorization header: use HTTP Basic key:secret (apps) or "
            "Bearer <token> (admin, users)"
        )
    credentials = parse_authorization(header)
    directory = runtime.directory
    if isinstance(credentials, Basic):
        if not credentials.has_secret:
            raise Unauthorized("Basic credentials must be key:secret")
        key, secret = credentials.key, credentials.secret
        return await directory.login(
            address,
            basic_credential(key),
            lambda: directory.authenticate_basic(key, secret),
            record=record,
        )
    if isinstance(credentials, Bearer):
        token = credentials.token
        return await directory.login(
            address,
            bearer_credential(token),
            lambda: directory.authenticate_bearer(token),
            record=record,
        )
    raise Unauthorized("unsupported Authorization scheme; use Basic or Bearer")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
