"""The OpenAPI document users read: security schemes and problem+json error responses.

FastAPI derives paths and bodies from the routes; this adds what it cannot know:

* three security schemes (HTTP Basic for apps, the admin bearer token, a user's access
  token), and on each operation the ones it accepts, so ``/docs`` has an Authorize button
  and "Try it out" sends the right header;
* on every operation, the ``application/problem+json`` error responses it can answer
  (401/403 when it authenticates, 404, 409 for commands, 422, 429), all with one
  ``Problem`` schema, in place of FastAPI's own 422 shape, which ordercast never sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from ordercast.api.deps import get_principal

BASIC = "appBasic"
ADMIN = "adminBearer"
USER = "userBearer"
DOSHII = "doshiiJwt"

SCHEMES: dict[str, dict[str, Any]] = {
    BASIC: {
        "type": "http",
        "scheme": "basic",
        "description": "Apps: HTTP Basic with the app's key as user name and its secret as "
        "password (`ock_…:ocs_…`).",
    },
    ADMIN: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "oca_ admin token",
        "description": "The admin token (`ORDERCAST_ADMIN_TOKEN`, printed by `ordercast run` "
        "in dev mode): tenants, locations, apps, and everything an app may do.",
    },
    USER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "oct_ access token",
        "description": "A customer's access token from `POST /v1/users/{user_id}/tokens`: "
        "their own orders only.",
    },
    DOSHII: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The Doshii Partner API (`/partner/v3`): a JWT, HS256 over "
        "`{clientId: <app key>, timestamp: <epoch seconds>}` signed with the app's secret, "
        "as doshii-partner-node-sdk makes it; within 300 s of the server's clock.",
    },
}

# Who may call the operations of each tag (default: any of the three).
_BY_TAG: dict[str, tuple[str, ...]] = {
    "admin": (ADMIN,),
    "users": (BASIC,),
    "webhooks": (BASIC, ADMIN),
    "deliveries": (BASIC, ADMIN, USER),
    "orders": (BASIC, ADMIN, USER),
    "subscriptions": (BASIC,),
    "pos flow": (BASIC,),
    "dashboard": (BASIC, ADMIN),
}
# Operations whose rule differs from their tag's.
_BY_OPERATION: dict[tuple[str, str], tuple[str, ...]] = {
    ("get", "/v1/locations/{location_id}"): (ADMIN, BASIC),
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; `code` is stable, match on it.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "example": "urn:ordercast:error:not_found"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {
            "type": "string",
            "description": "e.g. unauthorized, forbidden, not_found, invalid_transition, "
            "stale_update, conflict, wrong_phase, validation_error, rate_limited",
        },
        "errors": {
            "type": "array",
            "description": "validation_error: one entry per invalid field",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

_WHY = {
    "400": "Malformed request (problem+json)",
    "401": "No or wrong credentials (problem+json, `unauthorized`)",
    "403": "These credentials may not do this (problem+json, `forbidden`)",
    "404": "Not found, or not visible to these credentials (problem+json, `not_found`)",
    "409": "Conflicts with the current state (problem+json, e.g. `invalid_transition`, "
    "`conflict`, `wrong_phase`)",
    "422": "Invalid parameters or body (problem+json, `validation_error`)",
    "503": "Storage or bus unreachable (problem+json, `unavailable`)",
    "429": "Too many requests (problem+json, `rate_limited`; see `Retry-After`)",
}
_PROBLEM_REF = "#/components/schemas/Problem"
OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "string",
            "description": "invalid_request, invalid_client, invalid_grant, "
            "unauthorized_client, unsupported_grant_type, invalid_scope, or "
            "temporarily_unavailable (429: too many failed logins)",
        },
        "error_description": {"type": "string"},
    },
}
DOSHII_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["message", "code", "status"],
    "properties": {
        "message": {"type": "string"},
        "code": {"type": "string", "description": "ordercast's stable error code"},
        "status": {"type": "integer"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_DOSHII_PREFIX = "/partner/v3"
_DOSHII_ERRORS = {
    "400": "Invalid request, as Doshii answers it (`validation_error`, with `errors`)",
    "401": "No or wrong JWT (`unauthorized`)",
    "403": "This app is not granted the location (`forbidden`)",
    "404": "Not found, or another tenant's (`not_found`)",
    "409": "Conflicts with the order's current state or version",
    "429": "Too many failed logins for this app key from this address (see `Retry-After`)",
    "503": "Storage unreachable (see `Retry-After`)",
}
_OAUTH_ERRORS = {
    "400": "RFC 6749 error: invalid_request, invalid_grant, unsupported_grant_type, ...",
    "401": "RFC 6749 error: invalid_client (wrong or missing client credentials)",
    "429": "Too many failed logins for this client or account from this address: "
    "temporarily_unavailable, with Retry-After",
}
_COMMANDS = {"post", "put", "patch", "delete"}


def _uses(dependant: Dependant, fn: Callable[..., Any]) -> bool:
    if dependant.call is fn:
        return True
    return any(_uses(dep, fn) for dep in dependant.dependencies)


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app`` with security schemes and error responses."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SCHEMES)
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    routes: dict[tuple[str, str], APIRoute] = {}
    for context in iter_route_contexts(app.routes):
        candidate = context.original_route
        if isinstance(candidate, APIRoute) and candidate.include_in_schema:
            for method in context.methods or ():
                routes[(method.lower(), str(context.path_format))] = candidate
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            route = routes.get((method, path))
            if route is None:
                continue
            authenticated = _uses(route.dependant, get_principal)
            tag = (operation.get("tags") or [""])[0]
            codes = []
            if operation.get("parameters") or operation.get("requestBody"):
                codes.append("422")
            if authenticated:
                who = _BY_OPERATION.get((method, path)) or _BY_TAG.get(tag, (BASIC, ADMIN, USER))
                operation["security"] = [{name: []} for name in who]
                codes += ["401", "403", "429"]
            elif tag == "pusher":
                codes += ["400", "401", "403"]
            if path in ("/health", "/ready"):
                codes.append("503")
            if "{" in path or authenticated:
                codes.append("404")
            if method in _COMMANDS and authenticated:
                codes.append("409")
            responses = operation.setdefault("responses", {})
            if path.startswith(_DOSHII_PREFIX):
                # Doshii's error body, not problem+json (api/doshii.py's DoshiiRoute).
                operation["security"] = [{DOSHII: []}]
                for key in [c for c in responses if c[0] in "45"]:
                    del responses[key]  # FastAPI's 422 problem: Doshii answers 400
                for code, why in _DOSHII_ERRORS.items():
                    responses[code] = {
                        "description": why,
                        "content": {"application/json": {"schema": DOSHII_ERROR_SCHEMA}},
                    }
                continue
            if path == "/auth-oauth2/oauth/token":
                # RFC 6749 section 5.2 error bodies, not problem+json (api/oauth.py).
                for code, why in _OAUTH_ERRORS.items():
                    responses[code] = {
                        "description": why,
                        "content": {"application/json": {"schema": OAUTH_ERROR_SCHEMA}},
                    }
                continue
            for code in sorted(set(codes)):
                responses[code] = _problem(_WHY[code])
    return schema


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
