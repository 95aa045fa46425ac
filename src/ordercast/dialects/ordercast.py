"""The ``ordercast`` webhook dialect: canonical events in a Standard Webhooks envelope.

``{"type": "order.accepted", "timestamp": <occurred_at>, "data": {...}}`` where ``data``
carries the event's identity and position (``event_id``, ``order_id``, ``seq``), the order's
``status`` right after it, the event's own fields (``event``) and the Order resource after
the change (``order``). Receivers dedupe on ``webhook-id`` (or ``event_id``) and drop any
``seq`` lower than the last one they applied. Every canonical event is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ordercast.dialects import Target, WireMessage
from ordercast.domain.events import ALL_EVENT_TYPES, EventRecord

NAME: Final = "ordercast"
EVENT_TYPES: Final[frozenset[str]] = ALL_EVENT_TYPES


def render(event: EventRecord, order: Mapping[str, Any], target: Target) -> list[WireMessage]:
    data: dict[str, Any] = {
        "event_id": event.event_id,
        "order_id": event.order_id,
        "location_id": order.get("location_id"),
        "seq": event.seq,
        "status": event.status,
        "occurred_at": event.occurred_at,
        "recorded_at": event.recorded_at,
        "actor": event.actor,
        "event": event.data,
        "order": dict(order),
    }
    return [
        WireMessage(event.type, {"type": event.type, "timestamp": event.occurred_at, "data": data})
    ]
