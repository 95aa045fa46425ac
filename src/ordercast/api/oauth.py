"""OAuth2 token endpoint (Ordering Stack's path), the JWKS document and account management.

``POST /auth-oauth2/oauth/token`` (RFC 6749): a form body with ``grant_type`` =
``password`` (``username``, ``password``), ``client_credentials`` or ``refresh_token``
(``refresh_token``); the client is an app, by HTTP Basic ``key:secret`` (or ``client_id`` /
``client_secret`` in the body); ``X-Tenant``, when sent, must be the app's tenant. Errors
are RFC 6749 section 5.2 bodies ``{"error", "error_description"}``, not problem+json, because
OAuth2 clients read those.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from ordercast.api.deps import PrincipalDep, RuntimeDep, client_address, runtime_of
from ordercast.api.schemas import In
from ordercast.domain.access import AppPrincipal, require_admin
from ordercast.domain.accounts import GRANT_TYPES
from ordercast.errors import OAuthError, RateLimited, Unauthorized, ValidationError
from ordercast.protocols.credentials import Basic, parse_authorization
from ordercast.protocols.logins import account_credential, basic_credential
from ordercast.runtime import Runtime
from ordercast.services.accounts import AccountService, account_dict

router = APIRouter()

TOKEN_PATH = "/auth-oauth2/oauth/token"
MAX_FORM_BYTES = 16 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(exc: OAuthError) -> JSONResponse:
    status = 401 if exc.error == "invalid_client" else 400
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="ordercast"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.detail}, status_code=status, headers=headers
    )


def _accounts(rt: Runtime) -> AccountService:
    return rt.accounts


async def _form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request", "send the token request as application/x-www-form-urlencoded"
        )
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "the token request is too large")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError("invalid_request", "the form body is not valid UTF-8") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:  # RFC 6749 3.2: parameters must not be repeated
            raise OAuthError("invalid_request", f"parameter {key!r} is repeated")
        form[key] = value
    return form


async def _client(rt: Runtime, request: Request, form: dict[str, str]) -> AppPrincipal:
    try:
        credentials = parse_authorization(request.headers.get("authorization"))
    except Unauthorized as exc:
        raise OAuthError("invalid_client", "malformed Basic client credentials") from exc
    key = secret = None
    if isinstance(credentials, Basic):
        if not credentials.has_secret:
            raise OAuthError("invalid_client", "Basic client credentials must be key:secret")
        key, secret = credentials.key, credentials.secret
    elif "client_id" in form:
        key, secret = form["client_id"], form.get("client_secret", "")
    if not key:
        raise OAuthError(
            "invalid_client", "authenticate the client: HTTP Basic with an app's key:secret"
        )
    directory = rt.directory
    try:
        client = await directory.login(
            client_address(request),
            basic_credential(key),
            lambda: directory.authenticate_basic(key, secret or ""),
        )
    except Unauthorized as exc:
        raise OAuthError("invalid_client", "unknown client or wrong secret") from exc
    tenant = request.headers.get("x-tenant")
    if tenant is not None and tenant != client.tenant_id:
        raise OAuthError("invalid_client", "X-Tenant is not this client's tenant")
    return client


@router.post(TOKEN_PATH, tags=["oauth2"], response_model=None)
async def token(request: Request) -> JSONResponse:
    """OAuth2 token endpoint: ``password``, ``client_credentials``, ``refresh_token``."""
    rt = runtime_of(request)
    try:
        form = await _form(request)
        client = await _client(rt, request, form)
        grant = form.get("grant_type", "")
        scope = form.get("scope") or "read"
        if len(scope) > 200:
            raise OAuthError("invalid_scope", "scope is too long")
        accounts = _accounts(rt)
        if grant == "password":
            username, password = form.get("username", ""), form.get("password", "")
            body = await rt.directory.login(
                client_address(request),
                account_credential(client.tenant_id, username),
                lambda: accounts.password_grant(client, username, password, scope),
                failed=_bad_password,
            )
        elif grant == "client_credentials":
            body = accounts.client_credentials_grant(client, scope)
        elif grant == "refresh_token":
            body = await accounts.refresh_grant(client, form.get("refresh_token", ""), scope)
        elif not grant:
            raise OAuthError("invalid_request", "grant_type is required")
        else:
            raise OAuthError(
                "unsupported_grant_type", f"grant_type must be one of {', '.join(GRANT_TYPES)}"
            )
    except OAuthError as exc:
        return _oauth_error(exc)
    except RateLimited as exc:
        # RFC 6749 has no code for this; RFC 6585's 429 with Retry-After, in the RFC 6749
        # error shape so OAuth2 clients can show it.
        return JSONResponse(
            {"error": "temporarily_unavailable", "error_description": exc.detail},
            status_code=429,
            headers={**_NO_STORE, "Retry-After": str(exc.retry_after)},
        )
    return JSONResponse(body, headers=_NO_STORE)


def _bad_password(exc: Exception) -> bool:
    """A failed password login (unknown account, wrong password, disabled account)."""
    return isinstance(exc, OAuthError) and exc.error == "invalid_grant"


@router.get("/.well-known/jwks.json", tags=["oauth2"])
async def jwks(rt: RuntimeDep) -> dict[str, Any]:
    """The public key(s) that verify ordercast's JWT access tokens."""
    return rt.directory.signer.jwks()


# -- accounts (admin) ---------------------------------------------------------------------------


class AccountIn(In):
    tenant_id: str = Field(min_length=1, max_length=40)
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    roles: list[str] = Field(min_length=1, max_length=3)
    location_ids: list[str] = Field(default_factory=list, max_length=1000)


@router.post("/v1/accounts", status_code=201, tags=["admin"])
async def create_account(
    body: AccountIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Create a login (staff, kds or customer) with a password (stored as an argon2 hash)."""
    require_admin(principal)
    account = await _accounts(rt).create(
        tenant_id=body.tenant_id,
        username=body.username,
        password=body.password,
        roles=body.roles,
        location_ids=body.location_ids,
    )
    return account_dict(account)


class AccountPatch(In):
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    location_ids: list[str] | None = Field(default=None, max_length=1000)
    disabled: bool | None = None


@router.patch("/v1/accounts/{account_id}", tags=["admin"])
async def update_account(
    account_id: str, body: AccountPatch, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Change a login's password or venues, or disable it (no new tokens, no refresh)."""
    require_admin(principal)
    account = await _accounts(rt).update(
        account_id, password=body.password, location_ids=body.location_ids, disabled=body.disabled
    )
    return account_dict(account)


@router.get("/v1/accounts", tags=["admin"])
async def list_accounts(tenant_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    require_admin(principal)
    if not tenant_id:
        raise ValidationError("tenant_id is required", field="tenant_id")
    return {"accounts": [account_dict(a) for a in await _accounts(rt).list(tenant_id)]}
