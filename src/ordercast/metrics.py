"""Prometheus metrics (one registry per process) and the HTTP metrics middleware.

What is counted where, keeping the fan-out hot path free of per-socket metric calls:

* connections, subscriptions and messages fanned out are read from the gateways' own
  state and counters when ``/metrics`` is scraped (:class:`GatewayCollector`);
* commit -> socket-write latency and the bus delay are observed once per bus message
  (:func:`observe_bus_message`, from the hub), not per socket;
* outbox depth, the age of the oldest due webhook message and pending POS timers are
  queried when ``/metrics`` is scraped (:func:`refresh`);
* webhook deliveries and their latency once per attempt (:func:`webhook_attempt`);
* failed logins and rate-limit refusals at the edges that refuse them.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order

REGISTRY = CollectorRegistry(auto_describe=True)
# Process metrics (CPU, memory, open files, start time), Python GC and version.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

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

# Latency buckets for the real-time path (seconds): sub-millisecond to a few seconds.
_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FANOUT_LATENCY = Histogram(
    "ordercast_fanout_latency_seconds",
    "Time from an order change's commit to its write to the subscribed sockets (per change "
    "that reached at least one socket of this process).",
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
BUS_DELAY = Histogram(
    "ordercast_bus_delay_seconds",
    "Time from an order change's commit to its bus message reaching this process's gateways.",
    buckets=_FAST_BUCKETS,
    registry=REGISTRY,
)
BUS_RECONNECTS = Counter(
    "ordercast_bus_reconnects_total",
    "Times the bus connection (Redis) was lost and re-established.",
    registry=REGISTRY,
)
BUS_LAGGED = Counter(
    "ordercast_bus_lagged_total",
    "Times the gateways' bus listener overflowed or lost messages and caught up from storage.",
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "ordercast_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, retry, failed) and dialect.",
    ["outcome", "dialect"],
    registry=REGISTRY,
)
WEBHOOK_LATENCY = Histogram(
    "ordercast_webhook_latency_seconds",
    "Webhook delivery attempt latency (request sent to response read), by dialect.",
    ["dialect"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "ordercast_outbox_messages",
    "Webhook messages not yet delivered, by status (pending, delivering), all endpoints.",
    ["status"],
    registry=REGISTRY,
)
OUTBOX_CHANGES = Gauge(
    "ordercast_outbox_changes_waiting",
    "Order changes kept for a delivery worker to render into webhook messages "
    "(ORDERCAST_OUTBOX_RENDER=worker).",
    registry=REGISTRY,
)
OUTBOX_OLDEST_DUE = Gauge(
    "ordercast_outbox_oldest_due_age_seconds",
    "How long the oldest due webhook message (on an enabled endpoint) has been waiting.",
    registry=REGISTRY,
)
POS_TIMERS_PENDING = Gauge(
    "ordercast_pos_timers_pending",
    "POS-flow timers not yet run (fire times and callback deadlines).",
    registry=REGISTRY,
)
AUTH_FAILURES = Counter(
    "ordercast_auth_failures_total",
    "Failed logins (wrong or unknown credentials), by surface (http, stomp, pusher).",
    ["surface"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "ordercast_rate_limited_total",
    "Requests or logins refused by a rate limit, by surface.",
    ["surface"],
    registry=REGISTRY,
)
for _surface in ("http", "stomp", "pusher"):
    AUTH_FAILURES.labels(_surface)
    RATE_LIMITED.labels(_surface)
for _status in ("pending", "delivering"):
    OUTBOX_DEPTH.labels(_status)


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


def route_of(scope: Scope, root_path: str = "") -> str:
    """The route template that served this request (``/v1/orders/{order_id}``), for labels
    and logs; ``unmatched`` when none did. FastAPI's routes write themselves into the scope;
    plain Starlette routes and mounts (``/docs``, static files) are matched here again,
    with the ``root_path`` the request came in with (a mount rewrites it in the scope)."""
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    cached = scope.get("ordercast.route")
    if cached is not None:
        return str(cached)
    found = "unmatched"
    app = scope.get("app")
    original = {**scope, "root_path": root_path}
    for candidate in getattr(app, "routes", ()):
        try:
            match, _child = candidate.matches(original)
        except Exception:  # pragma: no cover - a route that cannot match this scope
            continue
        if match is Match.FULL:
            found = str(getattr(candidate, "path", "") or "unmatched")
            if isinstance(candidate, Mount):
                found += "/{path}"
            break
    scope["ordercast.route"] = found
    return found


def _observe(scope: Scope, root_path: str, status: int, seconds: float) -> None:
    route = route_of(scope, root_path)
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
        root_path = scope.get("root_path", "")

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            _observe(scope, root_path, 500, time.perf_counter() - started)
            raise
        _observe(scope, root_path, status, time.perf_counter() - started)


# -- the real-time path ----------------------------------------------------------------


class _PendingLatency:
    """Commit times of the bus messages dispatched in this loop iteration, observed
    together by one callback queued after the gateways' flushes."""

    def __init__(self) -> None:
        self.committed: list[float] = []
        self.before = 0
        self.written: Callable[[], int] | None = None

    def flush(self) -> None:
        committed, self.committed = self.committed, []
        written = self.written
        if written is None or written() == self.before:
            return  # nothing reached a socket
        now = time.time()
        for at in committed:
            FANOUT_LATENCY.observe(max(0.0, now - at))


_PENDING = _PendingLatency()


def observe_bus_message(payload: dict[str, Any], written: Callable[[], int]) -> None:
    """Called by the hub once per order bus message, after every gateway consumed it.

    ``payload["committed_at"]`` is the commit's wall-clock time. The gateways write their
    fan-out at the end of this loop iteration (``flush_soon``), so the latency is taken in
    one callback queued after theirs, for every message of the iteration, and only if the
    gateways wrote to some socket meanwhile (``written``: their write counters)."""
    committed = payload.get("committed_at")
    if not isinstance(committed, float):
        return
    BUS_DELAY.observe(max(0.0, time.time() - committed))
    pending = _PENDING
    if not pending.committed:
        pending.written = written
        pending.before = written()
        try:
            asyncio.get_running_loop().call_soon(pending.flush)
        except RuntimeError:  # pragma: no cover - always inside the hub's loop
            pending.committed.append(committed)
            pending.flush()
            return
    pending.committed.append(committed)


_WEBHOOK_CHILDREN: dict[tuple[str, str], tuple[Any, Any]] = {}


def webhook_attempt(outcome: str, dialect: str, seconds: float) -> None:
    children = _WEBHOOK_CHILDREN.get((outcome, dialect))
    if children is None:
        children = _WEBHOOK_CHILDREN[(outcome, dialect)] = (
            WEBHOOK_DELIVERIES.labels(outcome, dialect),
            WEBHOOK_LATENCY.labels(dialect),
        )
    children[0].inc()
    children[1].observe(seconds)


# -- state read at scrape time ------------------------------------------------------------


class GatewaySource(Protocol):
    """What the gateways expose to the collector (see ``observability.py``)."""

    def connection_counts(self) -> Iterable[tuple[str, str, int, int]]:
        """(protocol, app id, connections, subscriptions) rows."""
        ...

    def fanout_totals(self) -> Iterable[tuple[str, int]]:
        """(protocol, messages written to sockets so far) rows."""
        ...


class GatewayCollector(Collector):
    """Connections, subscriptions and messages fanned out, read from the gateways of the
    runtime registered last (one per process outside tests)."""

    def __init__(self) -> None:
        self.source: weakref.ReferenceType[GatewaySource] | None = None

    def collect(self) -> Iterable[Metric]:
        connections = GaugeMetricFamily(
            "ordercast_ws_connections",
            "Open WebSocket connections by protocol and app (this process).",
            labels=["protocol", "app"],
        )
        subscriptions = GaugeMetricFamily(
            "ordercast_ws_subscriptions",
            "Channel / destination subscriptions by protocol and app (this process).",
            labels=["protocol", "app"],
        )
        fanned = CounterMetricFamily(
            "ordercast_fanout_messages",
            "Messages written to sockets by the fan-out, by protocol (this process).",
            labels=["protocol"],
        )
        source = self.source() if self.source is not None else None
        if source is not None:
            for protocol, app, conns, subs in source.connection_counts():
                connections.add_metric([protocol, app], conns)
                subscriptions.add_metric([protocol, app], subs)
            for protocol, total in source.fanout_totals():
                fanned.add_metric([protocol], total)
        yield connections
        yield subscriptions
        yield fanned


GATEWAYS = GatewayCollector()
REGISTRY.register(GATEWAYS)


class ScrapeSource(Protocol):
    async def outbox_depth(self) -> tuple[dict[str, int], float | None]: ...
    async def timers_pending(self) -> int: ...


async def refresh(source: ScrapeSource) -> None:
    """Query the gauges that live in storage (on each scrape)."""
    depth, oldest_due = await source.outbox_depth()
    for status in ("pending", "delivering"):
        OUTBOX_DEPTH.labels(status).set(depth.get(status, 0))
    OUTBOX_CHANGES.set(depth.get("rendering", 0))
    OUTBOX_OLDEST_DUE.set(0.0 if oldest_due is None else max(0.0, time.time() - oldest_due))
    POS_TIMERS_PENDING.set(await source.timers_pending())
