"""Pusher server webhooks (the ``pusher`` endpoint dialect).

A ``pusher`` endpoint receives what the Pusher gateway reports about its app's channels,
in Pusher's own webhook format, and nothing about orders (``render`` returns no message for
an order event). Body: ``{"time_ms": <ms when the webhook was created>, "events": [...]}``;
each event has a ``name`` and its fields:

* ``channel_occupied`` / ``channel_vacated``: ``channel``
* ``member_added`` / ``member_removed``: ``channel``, ``user_id`` (presence channels; first
  socket of a user in, last socket out)
* ``client_event``: ``channel``, ``event``, ``data``, ``socket_id``, and ``user_id`` on
  presence channels (only for apps with client events enabled)

Hosted Pusher batches webhooks for up to 250 ms or 20 events; ``MAX_BATCH`` keeps the
same bound on one body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ordercast.dialects import Target, WireMessage
from ordercast.domain.events import EventRecord

NAME: Final = "pusher"
EVENT_TYPES: Final = frozenset(
    {"channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event"}
)
#: Events held back for a short while, and dropped together with the event that undoes them
#: when it comes first (a quick reconnect): key kind of each.
DEBOUNCED: Final = {"channel_vacated": "channel", "member_removed": "member"}
UNDOES: Final = {"channel_occupied": "channel", "member_added": "member"}
MAX_BATCH: Final = 20
WIRE_TYPE_LENGTH: Final = 64


def render(event: EventRecord, order: Mapping[str, Any], target: Target) -> list[WireMessage]:
    """Order events are not Pusher webhooks: a ``pusher`` endpoint gets none of them."""
    return []


def debounce_key(event: Mapping[str, Any]) -> tuple[str, ...] | None:
    """What a debounced event and the event that cancels it have in common, or None."""
    name = event.get("name")
    kind = DEBOUNCED.get(str(name)) or UNDOES.get(str(name))
    if kind is None:
        return None
    channel = str(event.get("channel", ""))
    if kind == "member":
        return (kind, channel, str(event.get("user_id", "")))
    return (kind, channel)


def batches(events: Sequence[dict[str, Any]], limit: int = MAX_BATCH) -> list[list[dict[str, Any]]]:
    """Split events, in order, into bodies of at most ``limit`` events."""
    return [list(events[i : i + limit]) for i in range(0, len(events), limit)]


def body(time_ms: int, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"time_ms": time_ms, "events": list(events)}


def wire_type(events: Sequence[Mapping[str, Any]]) -> str:
    """The message's ``wire_type`` in the outbox: the event names, de-duplicated, in order."""
    names: list[str] = []
    for event in events:
        name = str(event.get("name"))
        if name not in names:
            names.append(name)
    return ",".join(names)[:WIRE_TYPE_LENGTH]
