"""Prometheus metrics (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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


def count_events(_order: Order, records: list[EventRecord]) -> None:
    for record in records:
        EVENTS_APPENDED.labels(record.type).inc()
