"""THE isolation matrix table: one entry per way into ordercast.

``tests/security/test_isolation_matrix.py`` lists the public surface from the code — every
route of the FastAPI app (``METHOD /path``), every WebSocket route of the gateway, every
STOMP destination prefix, every guarded Pusher channel prefix — and fails for anything
without an entry here. Adding a route? Add its entry below, saying what its path and body
name (an order, a location, an app, ...), and the matrix attacks it from two tenants, two
locations, every app kind and users with every kind of token, asserting that each attempt
is refused and that no byte of the victim's orders reaches the attacker.

Entry kinds (``Entry.target``):

``public``      no credentials, no tenant data (health, metrics, API docs)
``admin``       the admin token only: every app and user is refused (401/403)
``order``       ``{order_id}`` names the victim's order
``delivery``    ``{delivery_id}`` names the victim order's courier job
``location``    ``{location_id}`` names the victim's location
``venue``       ``{venue}`` names the victim's location; its orders: apps and staff only
``app``         ``{app_id}`` (and ``{endpoint_id}``) name the victim app (and its webhook
                endpoint): webhook endpoints, attempts, messages, replay
``create``      creates an order: the body names the victim's location
``list``        lists the caller's own orders; ``?location_id=`` the victim's is refused
``mint``        an app mints a user token (any user id): what the token can reach is checked
                (it carries the minting app's grants only)
``pusher_auth`` a Pusher channel-authorization endpoint (credentials in ``via``)
``pusher_api``  the Pusher HTTP API, signed by the attacker, for the victim app's id
``pusher_own``  the Pusher HTTP API where the signature alone names the app (no victim id)
``pusher_user`` Pusher user authentication: signs the caller's own user data only
``partner``     the Doshii Partner API (``/partner/v3``), with the attacker's own JWT and
                the victim's location in ``doshii-location-id``: refused
``own``         the caller's own things only (tokens for itself, public keys): any answer,
                but nothing of the victim's
``static``      mounted static files (no tenant data); not called
``stream``      a server-sent event stream (it never ends): test_console_stream opens it on a
                real HTTP server, as every attacker, on the victim's location and its own
``partner_own`` the Doshii Partner API on the caller's own things (its webhooks, unknown
                paths): any answer, but nothing of the victim's
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    target: str
    body: dict[str, Any] | None = None
    #: Pusher auth endpoints: "params" (key + secret/access_token in query or form) or
    #: "headers" (Authorization: Basic / Bearer).
    via: str = ""
    query: dict[str, str] = field(default_factory=dict)


ITEM = {"name": "Soup", "quantity": 1, "unit_price": 500}

ROUTES: dict[str, Entry] = {
    # system and documentation
    "GET /health": Entry("public"),
    "GET /metrics": Entry("public"),
    "GET /openapi.json": Entry("public"),
    "GET /docs": Entry("public"),
    "GET /docs/oauth2-redirect": Entry("public"),
    "GET /redoc": Entry("public"),
    "GET /ready": Entry("public"),
    "WS /docs-assets": Entry("static"),
    # admin
    "PATCH /v1/apps/{app_id}": Entry("admin", {"name": "x"}),
    # the operator console: bytes checked for leaks (statuses not yet pinned here)
    "GET /dashboard": Entry("own"),
    "WS /dashboard/assets": Entry("static"),
    "GET /dashboard/api/session": Entry("own"),
    "GET /dashboard/api/locations/{location_id}/orders": Entry("own"),
    "GET /dashboard/api/locations/{location_id}/stream": Entry("stream"),
    "GET /dashboard/api/orders/{order_id}/timeline": Entry("own"),
    "GET /dashboard/api/endpoints": Entry("own"),
    "GET /dashboard/api/connections": Entry("own"),
    "GET /.well-known/jwks.json": Entry("public"),
    # Ordering Stack: OAuth2 tokens for the caller itself, accounts (admin), order pulls
    "POST /auth-oauth2/oauth/token": Entry("own"),
    "POST /v1/accounts": Entry(
        "admin", {"tenant_id": "{tenant_id}", "username": "x", "password": "x", "roles": ["staff"]}
    ),
    "PATCH /v1/accounts/{account_id}": Entry("admin", {"disabled": True}),
    "GET /v1/accounts": Entry("admin", query={"tenant_id": "{tenant_id}"}),
    "GET /ordering-api/api/orders/venue/{venue}": Entry("venue"),
    "GET /ordering-api/api/orders/opened": Entry("own"),
    # admin
    "POST /v1/tenants": Entry("admin", {"name": "x"}),
    "POST /v1/locations": Entry("admin", {"tenant_id": "{tenant_id}", "name": "x"}),
    "PATCH /v1/locations/{location_id}": Entry("admin", {"name": "x"}),
    "POST /v1/apps": Entry(
        "admin", {"tenant_id": "{tenant_id}", "name": "x", "kind": "channel", "location_ids": []}
    ),
    "GET /v1/locations/{location_id}": Entry("location"),
    # users
    "POST /v1/users/{user_id}/tokens": Entry("mint", {"ttl": 600}),
    # orders
    "POST /v1/orders": Entry("create", {"location_id": "{location_id}", "items": [ITEM]}),
    "GET /v1/orders": Entry("list"),
    "GET /v1/orders/{order_id}": Entry("order"),
    "GET /v1/orders/{order_id}/events": Entry("order"),
    "POST /v1/orders/{order_id}/transitions": Entry("order", {"to": "accepted"}),
    "POST /v1/orders/{order_id}/confirmation": Entry("order", {"confirmation": 1}),
    "POST /v1/orders/{order_id}/notifications": Entry(
        "order", {"type": "delivery_fee_changed", "message": "x"}
    ),
    "POST /v1/orders/{order_id}/notes": Entry("order", {"text": "x"}),
    "POST /v1/orders/{order_id}/cancellation": Entry("order", {"reason": "x"}),
    "POST /v1/orders/{order_id}/deliveries": Entry("order", {}),
    "POST /v1/deliveries/{delivery_id}/status": Entry("delivery", {"status": "assigned"}),
    "POST /v1/orders/{order_id}/subscription": Entry("order"),
    "DELETE /v1/orders/{order_id}/subscription": Entry("order"),
    "POST /v1/orders/{order_id}/fire": Entry("order"),
    # POS flow callbacks
    "POST /v1/pos/orders/{order_id}/price": Entry("order", {"status": "PRICED", "total": 1}),
    "POST /v1/pos/orders/{order_id}/commit": Entry("order", {"status": "COMMITTED"}),
    "POST /v1/pos/orders/{order_id}/fire": Entry("order", {"status": "PREPARING"}),
    "POST /v1/pos/orders/{order_id}/events": Entry("order", {"status": "PREPARED"}),
    # webhook endpoints (attempts, messages, replay)
    "POST /v1/apps/{app_id}/endpoints": Entry("app", {"url": "https://example.com/hook"}),
    "GET /v1/apps/{app_id}/endpoints": Entry("app"),
    "GET /v1/apps/{app_id}/endpoints/{endpoint_id}": Entry("app"),
    "PATCH /v1/apps/{app_id}/endpoints/{endpoint_id}": Entry("app", {"description": "x"}),
    "DELETE /v1/apps/{app_id}/endpoints/{endpoint_id}": Entry("app"),
    "POST /v1/apps/{app_id}/endpoints/{endpoint_id}/secret/rotate": Entry("app", {}),
    "GET /v1/apps/{app_id}/endpoints/{endpoint_id}/attempts": Entry("app"),
    "GET /v1/apps/{app_id}/endpoints/{endpoint_id}/messages": Entry("app"),
    "POST /v1/apps/{app_id}/endpoints/{endpoint_id}/replay": Entry("app", {}),
    # Pusher
    "GET /api/v1/pusher/auth": Entry("pusher_auth", via="params"),
    "POST /api/v1/pusher/auth": Entry("pusher_auth", via="params"),
    "POST /pusher/auth": Entry("pusher_auth", via="headers"),
    "POST /pusher/user-auth": Entry("pusher_user"),
    "POST /apps/{app_id}/events": Entry(
        "pusher_api", {"name": "e", "channels": ["private-o-{order_id}"], "data": "{}"}
    ),
    "POST /apps/{app_id}/batch_events": Entry(
        "pusher_api", {"batch": [{"name": "e", "channel": "private-o-{order_id}", "data": "{}"}]}
    ),
    "GET /apps/{app_id}/channels": Entry("pusher_api"),
    "GET /apps/{app_id}/channels/{channel_name}": Entry("pusher_api"),
    "GET /apps/{app_id}/channels/{channel_name}/users": Entry("pusher_api"),
    "POST /apps/{app_id}/users/{user_id}/terminate_connections": Entry("pusher_api", {}),
    "POST /users/{user_id}/terminate_connections": Entry("pusher_own", {}),
    # Doshii Partner API
    "POST /partner/v3/orders": Entry(
        "partner", {"items": [{"name": "x", "quantity": 1, "unitPrice": "1.00"}]}
    ),
    "GET /partner/v3/orders": Entry("partner"),
    "GET /partner/v3/orders/{order_id}": Entry("partner"),
    "PUT /partner/v3/orders/{order_id}": Entry("partner", {"status": "accepted", "version": "x"}),
    "PUT /partner/v3/orders/{order_id}/delivery": Entry("partner", {"status": "delivering"}),
    "POST /partner/v3/orders/{order_id}/subscription": Entry("partner"),
    "DELETE /partner/v3/orders/{order_id}/subscription": Entry("partner"),
    "GET /partner/v3/orders/{order_id}/logs": Entry("partner"),
    "POST /partner/v3/webhooks": Entry(
        "partner", {"event": "order_updated", "webhookUrl": "https://example.com/h"}
    ),
    "GET /partner/v3/webhooks": Entry("partner_own"),
    "GET /partner/v3/webhooks/{event}": Entry("partner_own"),
    "PUT /partner/v3/webhooks/{event}": Entry(
        "partner_own", {"webhookUrl": "https://example.com/h"}
    ),
    "DELETE /partner/v3/webhooks/{event}": Entry("partner_own"),
    "DELETE /partner/v3/{path:path}": Entry("partner_own"),
    "GET /partner/v3/{path:path}": Entry("partner_own"),
    "PATCH /partner/v3/{path:path}": Entry("partner_own"),
    "POST /partner/v3/{path:path}": Entry("partner_own"),
    "PUT /partner/v3/{path:path}": Entry("partner_own"),
}

#: WebSocket routes of the gateway port (``GatewayServer.route_names()``) -> the protocol
#: whose checks below cover them.
GATEWAY_ROUTES: dict[str, str] = {
    "/app/socket": "doshii",
    "/app/socket/": "doshii",
    "/ws": "stomp",
    "/websocket": "stomp",
    r"/app/(?P<key>[^/]+)/?": "pusher",
}

#: STOMP destination prefixes (``orderingstack.PREFIXES``) -> the victim's destinations
#: under that prefix ({tenant_id}, {location_id}, {user}, {order_id} of the victim).
STOMP_DESTINATIONS: dict[str, list[str]] = {
    "order-changes": ["/order-changes/{user}/{order_id}", "/order-changes/{tenant_id}/{user}"],
    "kds": ["/kds/{tenant_id}/{location_id}", "/kds/{tenant_id}/{user}"],
    "notifications": ["/notifications/{tenant_id}/{user}"],
    "venue": ["/venue/{tenant_id}/{location_id}"],
    "venues": ["/venues/{tenant_id}/{location_id}"],
    # Accepted and silent (Ordering Stack clients subscribe; ordercast sends nothing there).
    "modules": ["/modules/{tenant_id}/{location_id}"],
    "steering": ["/steering/{tenant_id}/{location_id}"],
}
#: Destinations anyone logged in may subscribe to because nothing is ever sent there.
STOMP_SILENT = frozenset({"modules", "steering"})

#: Guarded Pusher channel prefixes (``gateway.pusher.orders.GUARDED_PREFIXES``) -> the victim's
#: channel.
PUSHER_CHANNELS: dict[str, str] = {
    "private-o-": "private-o-{order_id}",
    "presence-r-": "presence-r-{location_id}",
}
