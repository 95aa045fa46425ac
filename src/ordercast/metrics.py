"""Prometheus metrics (one registry per process) and the HTTP metrics middleware."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "ordercast_http_requests_total",
    "HTTP requests by method, route and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "ordercast_http_request_seconds",
    "HTTP request latency.",
    ["method", "route"],
    registry=REGISTRY,
)
EVENTS_APPENDED = Counter(
    "ordercast_events_appended_total",
    "Order events appended to the log, by type.",
    ["type"],
    registry=REGISTRY,
)


# Children of the labelled metrics by label values (``labels()`` validates and takes a
# lock on every call). Bounded like the metrics themselves: event types; routes x methods
# x statuses.
_EVENT_CHILDREN: dict[str, Any] = {}
_REQUEST_CHILDREN: dict[tuple[str, str, int], Any] = {}
_LATENCY_CHILDREN: dict[tuple[str, str], Any] = {}


def count_events(_order: Order, records: list[EventRecord]) -> None:
    for record in records:
        counter = _EVENT_CHILDREN.get(record.type)
        if counter is None:
            counter = _EVENT_CHILDREN[record.type] = EVENTS_APPENDED.labels(record.type)
        counter.inc()


def _observe(scope: Scope, status: int, seconds: float) -> None:
    # The router writes the matched route into this same scope dict.
    route: str = getattr(scope.get("route"), "path", "unmatched")
    method: str = scope["method"]
    counter = _REQUEST_CHILDREN.get((method, route, status))
    if counter is None:
        counter = _REQUEST_CHILDREN[(method, route, status)] = HTTP_REQUESTS.labels(
            method, route, str(status)
        )
    counter.inc()
    latency = _LATENCY_CHILDREN.get((method, route))
    if latency is None:
        latency = _LATENCY_CHILDREN[(method, route)] = HTTP_LATENCY.labels(method, route)
    latency.observe(seconds)


class HttpMetrics:
    """Pure ASGI middleware: counts each HTTP request by (method, route template, status)
    and observes its latency (to the end of the response body).

    Not a ``BaseHTTPMiddleware``: that runs the rest of the app in a second task behind
    a memory stream, which cost more per request than the whole routing layer. Requests
    no route matched are labelled ``unmatched``; an exception that escapes the app (the
    outer error middleware answers it with a 500) is counted as status 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            _observe(scope, 500, time.perf_counter() - started)
            raise
        _observe(scope, status, time.perf_counter() - started)
