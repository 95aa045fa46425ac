"""Composition root for the HTTP API: ``create_app(runtime)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ordercast import __version__, metrics, observability
from ordercast.api import (
    admin,
    commands,
    dashboard,
    doshii,
    errors,
    oauth,
    openapi,
    orderingstack,
    orders,
    pos,
    pusher,
    webhooks,
)
from ordercast.api.errors import problem
from ordercast.api.limits import BodyLimit
from ordercast.errors import OrdercastError
from ordercast.gateway.stomp_http import StompOverHttp
from ordercast.logs import RequestLog
from ordercast.runtime import Runtime
from ordercast.settings import Settings

DESCRIPTION = """\
ordercast keeps every order's lifecycle and pushes each change, in real time and without
loss, to every party in the wire format it already speaks.

Authentication: admin endpoints take `Authorization: Bearer <admin token>`; apps use HTTP
Basic `key:secret`; users (customers) use `Authorization: Bearer <access_token>`.
Errors are `application/problem+json` with a stable `code`.
"""


def create_app(runtime: Runtime | None = None, settings: Settings | None = None) -> FastAPI:
    """The ASGI app. Pass an opened runtime, or settings and the lifespan opens one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            app.state.runtime = runtime
            yield
            return
        opened = await Runtime.open(settings or Settings())
        app.state.runtime = opened
        observability.install(opened)
        try:
            yield
        finally:
            await opened.close()

    # Swagger UI (/docs) and ReDoc (/redoc) from the assets fastapi-offline ships: no CDN.
    app = FastAPIOffline(
        title="ordercast",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url="/docs-assets",
        swagger_ui_parameters={"persistAuthorization": True},
    )
    if runtime is not None:
        app.state.runtime = runtime
        if hasattr(runtime, "hub"):  # an opened runtime (tests also pass bare ones)
            observability.install(runtime)
    errors.install(app)
    openapi.install(app)
    app.include_router(admin.router)
    app.include_router(orders.router)
    app.include_router(pusher.router)
    app.include_router(webhooks.router)
    app.include_router(pos.router)
    app.include_router(doshii.router)
    app.include_router(oauth.router)
    app.include_router(orderingstack.router)
    app.include_router(dashboard.router)
    dashboard.mount_assets(app)

    # The order commands as plain Starlette endpoints, matched before FastAPI's routes
    # (api/commands.py says why).
    app.router.routes[0:0] = commands.routes()
    app.add_middleware(metrics.HttpMetrics)
    app.add_middleware(RequestLog)  # one log line per request, with its id
    # Outermost: STOMP over WebSocket and SockJS at /ws and /websocket (long-lived
    # connections, outside the request metrics and logs).
    app.add_middleware(StompOverHttp, api=app)
    configured: Settings = getattr(runtime, "settings", None) or settings or Settings()
    app.add_middleware(BodyLimit, max_body_bytes=configured.max_body_bytes)

    @app.get("/health", tags=["system"])
    async def health(request: Request) -> Any:
        """200 ``ok``; 200 ``degraded`` with ``reasons`` while the bus is down (this node
        still serves REST, webhooks and its own subscribers, and catches up when the bus is
        back: taking every node out of a load balancer would be worse); 503 when storage,
        the truth, is unreachable."""
        rt: Runtime = request.app.state.runtime
        try:
            await rt.store.ping()
        except Exception as exc:  # StorageUnavailable, or what no driver mapping expected
            why = exc.code if isinstance(exc, OrdercastError) else type(exc).__name__
            return problem(503, "unavailable", "Unavailable", f"storage: {why}")
        reasons = []
        if rt.bus.down_reason is not None:
            reasons.append(f"bus: {rt.bus.down_reason}")
        else:
            try:
                await rt.bus.ping()
            except Exception as exc:
                reasons.append(f"bus: {type(exc).__name__}: {exc}"[:300])
        if reasons:
            return JSONResponse({"status": "degraded", "reasons": reasons})
        return JSONResponse({"status": "ok"})

    @app.get("/ready", tags=["system"])
    async def ready(request: Request) -> Any:
        """For a load balancer: 503 while the node drains or cannot reach storage or bus."""
        rt: Runtime = request.app.state.runtime
        if rt.gateway.draining:
            return problem(503, "draining", "Draining", "this node is draining")
        return await health(request)

    @app.get("/metrics", tags=["system"])
    async def prometheus(request: Request) -> Response:
        """Prometheus text: HTTP, connections, fan-out, webhooks, outbox, bus, POS timers,
        logins and the process (see the README for what to alert on)."""
        rt: Runtime = request.app.state.runtime
        await metrics.refresh(observability.install(rt))
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
