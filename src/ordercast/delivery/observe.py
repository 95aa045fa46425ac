"""One webhook delivery attempt's metrics and log line (called by the delivery worker)."""

from __future__ import annotations

import logging

from ordercast import metrics
from ordercast.logs import logger, safe_url
from ordercast.ports import Claimed, Outcome


def delivery_attempt(msg: Claimed, outcome: Outcome) -> None:
    """Count the attempt by outcome (delivered, retry, failed) and dialect, observe its
    latency, and write its log line (the URL without query string: it may hold a token)."""
    kind = {"delivered": "delivered", "pending": "retry"}.get(outcome.message_status, "failed")
    metrics.webhook_attempt(kind, msg.dialect, outcome.latency_ms / 1000.0)
    log = logger("ordercast.delivery")
    if not log.isEnabledFor(logging.INFO):
        return  # below the configured level: not even the line's fields are made
    log.info(
        "webhook.attempt",
        app=msg.app_id,
        endpoint=msg.endpoint_id,
        message=msg.id,
        order=msg.order_id,
        seq=msg.seq,
        dialect=msg.dialect,
        url=safe_url(msg.url),
        attempt=outcome.attempt,
        trigger=outcome.trigger,
        status=outcome.status_code,
        outcome=kind,
        latency_ms=round(outcome.latency_ms, 2),
        reason=None if outcome.delivered else outcome.reason[:200],
    )
