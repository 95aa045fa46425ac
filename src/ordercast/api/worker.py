"""``ordercast worker``'s own small HTTP port (``--http-port``): ``/health`` for a supervisor
or an orchestrator's liveness probe, and ``/metrics`` for Prometheus. The worker's webhook
attempts, latencies and POS timers are counted in its own process, so only its own port has
them; the outbox gauges (read from storage) are the same on every node."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ordercast import metrics, observability
from ordercast.api.errors import problem
from ordercast.errors import OrdercastError
from ordercast.runtime import Runtime


def create_worker_app(runtime: Runtime) -> Starlette:
    async def health(_request: Request) -> Response:
        """200 ``ok`` while storage answers (the worker's one dependency), else 503."""
        try:
            await runtime.store.ping()
        except Exception as exc:  # StorageUnavailable, or what no driver mapping expected
            why = exc.code if isinstance(exc, OrdercastError) else type(exc).__name__
            return problem(503, "unavailable", "Unavailable", f"storage: {why}")
        delivering = runtime.delivery is not None
        return JSONResponse({"status": "ok", "role": "worker", "delivering": delivering})

    async def prometheus(_request: Request) -> Response:
        await metrics.refresh(observability.install(runtime))
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/health", health), Route("/metrics", prometheus)])
