"""Open Dining (seed 000): canonical order events → Pusher events. Pure.

Channels: ``private-o-{order_id}`` (the customer's app, and staff of the location) and
``presence-r-{location_id}`` (restaurant tablets / staff apps).

``render(event, order, location)`` takes one stored event (:class:`EventRecord` or its dict),
the order after the change (``Order.to_dict()``) and the location's ``timezone`` and
``settings`` (``tracker_labels``, ``legacy_tracker``), and returns the Pusher events to
publish. Every payload carries the order ``seq`` (and ``order_id``) so a client can resume
with ``GET /v1/orders/{id}/events?after_seq=``. The mapping is the data below.

Decisions the seed leaves open (documented here, tested in tests/unit/dialects):

* ``order_confirmation``: ``order.accepted`` → ``{confirmation: 1}``; ``order.adjusted`` →
  ``{confirmation: 2}`` followed by ``order_adjustment``; ``order.rejected`` →
  ``{confirmation: 3, reason}``. An acceptance recorded as part of an adjustment
  (``confirmation: 2`` in its data) renders nothing itself: the adjustment speaks for it.
* ``order_tracker`` ``status``: for canonical order states, the location's
  ``settings.tracker_labels[state]``, else :data:`DEFAULT_TRACKER_LABELS` (delivery orders
  use :data:`DELIVERY_TRACKER_LABELS` first). States without a label send nothing. Courier
  updates send the seed's detailed provider status string (``courier_picked_up``…), the
  legacy string (``enroute_to_pickup``…) when ``settings.legacy_tracker`` is true. A free
  text ``order.note`` is an ``order_tracker`` whose status is the text. ``time`` is the
  event time, ISO 8601 in the location's timezone.
* ``order_update``: sent for POS pricing (``order.priced``, e.g. the RBI price callback with
  a total) and ``order.payment_updated``. ``order_state_key`` is a UUID v4 derived from the
  event id (deterministic, so every node renders the same key).
* ``order_notification``: ``order.notification`` as given; ``order.eta_updated`` becomes
  ``type: order_time_changed``.
* ``presence-r-{location_id}``: ``new_order`` (on ``order.created``) and
  ``order_cancellation`` (on ``order.cancelled``), each with ``order_id``, ``seq``, ``status``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ordercast.domain import events as ev
from ordercast.domain.events import EventRecord
from ordercast.domain.isotime import parse_iso
from ordercast.domain.provider_codes import (
    ProviderCode,
    lookup_provider_code,
    provider_code_for_status,
)

NAME: Final = "opendining"

ORDER_CHANNEL_PREFIX: Final = "private-o-"
LOCATION_CHANNEL_PREFIX: Final = "presence-r-"

ORDER_CONFIRMATION: Final = "order_confirmation"
ORDER_ADJUSTMENT: Final = "order_adjustment"
ORDER_TRACKER: Final = "order_tracker"
ORDER_NOTIFICATION: Final = "order_notification"
ORDER_UPDATE: Final = "order_update"
ORDER_CANCELLATION: Final = "order_cancellation"
NEW_ORDER: Final = "new_order"

EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {
        ORDER_CONFIRMATION,
        ORDER_ADJUSTMENT,
        ORDER_TRACKER,
        ORDER_NOTIFICATION,
        ORDER_UPDATE,
        ORDER_CANCELLATION,
        NEW_ORDER,
    }
)

#: Tracker labels for canonical order states when the location configures none.
DEFAULT_TRACKER_LABELS: Final[Mapping[str, str]] = {
    "held": "On Hold",
    "preparing": "In Progress",
    "ready": "Ready for Pickup",
    "handed_off": "Picked Up",
    "completed": "Completed",
    "failed": "Failed",
}
#: Overrides of the defaults for delivery orders.
DELIVERY_TRACKER_LABELS: Final[Mapping[str, str]] = {
    "ready": "Ready",
    "handed_off": "Out for Delivery",
    "completed": "Delivered",
}
#: Canonical order states whose event is an ``order_tracker`` (when a label exists).
TRACKED_STATES: Final[frozenset[str]] = frozenset(
    {"accepted", "held", "preparing", "ready", "handed_off", "completed", "failed"}
)
#: Courier events rendered as ``order_tracker`` with a provider status string.
COURIER_EVENTS: Final[frozenset[str]] = frozenset(ev.COURIER_STATE_EVENTS) | {ev.DELIVERY_UPDATED}
#: Events that become ``order_update`` (POS pricing overrides).
ORDER_UPDATE_EVENTS: Final[frozenset[str]] = frozenset({"order.priced", ev.ORDER_PAYMENT_UPDATED})


@dataclass(frozen=True, slots=True)
class LocationView:
    """What the dialect needs from a location."""

    id: str
    timezone: str = "UTC"
    settings: Mapping[str, Any] | None = None

    @property
    def legacy_tracker(self) -> bool:
        return bool((self.settings or {}).get("legacy_tracker"))

    def label(self, state: str, order_type: str | None) -> str | None:
        custom = (self.settings or {}).get("tracker_labels") or {}
        if isinstance(custom, Mapping) and isinstance(custom.get(state), str):
            return str(custom[state])
        if order_type == "delivery" and state in DELIVERY_TRACKER_LABELS:
            return DELIVERY_TRACKER_LABELS[state]
        return DEFAULT_TRACKER_LABELS.get(state)


@dataclass(frozen=True, slots=True)
class PusherEvent:
    """One Pusher event to publish; ``data`` is JSON-encoded by the gateway (once)."""

    channel: str
    event: str
    data: dict[str, Any]


def order_channel(order_id: str) -> str:
    return ORDER_CHANNEL_PREFIX + order_id


def location_channel(location_id: str) -> str:
    return LOCATION_CHANNEL_PREFIX + location_id


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _parse(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        return parse_iso(iso)
    except ValueError:
        return None


def local_time(iso: str | None, timezone: str) -> str | None:
    """An ISO 8601 instant re-expressed in the location's timezone (seconds precision)."""
    parsed = _parse(iso)
    if parsed is None:
        return iso
    try:
        return parsed.astimezone(_zone(timezone)).isoformat(timespec="seconds")
    except OverflowError:  # at the ends of datetime's range: as given
        return iso


def clock_time(moment: datetime) -> str:
    """``9:45 PM`` (no leading zero), as the seed shows."""
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def uuid4_from(seed: str) -> str:
    """A UUID version 4 string derived from ``seed`` (stable across nodes)."""
    raw = bytearray(hashlib.sha256(seed.encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def adjustment_payload(data: Mapping[str, Any], location: LocationView) -> dict[str, Any]:
    """``order_adjustment``: time (ASAP minutes) or order_date + eta (advance), removals."""
    adj: Mapping[str, Any] = data.get("adjustment") or {}
    out: dict[str, Any] = {}
    if adj.get("time") is not None:
        out["time"] = adj["time"]
    elif adj.get("order_date") or adj.get("eta"):
        when = _parse(data.get("required_at"))
        if when is not None:
            local = when.astimezone(_zone(location.timezone))
            out["order_date"] = local.strftime("%m/%d/%Y")
            out["eta"] = clock_time(local)
        else:
            out["order_date"] = adj.get("order_date")
            out["eta"] = adj.get("eta")
    out["items"] = [str(i) for i in data.get("removed_items") or adj.get("items") or []]
    out["options"] = [str(o) for o in data.get("removed_options") or adj.get("options") or []]
    return out


def _provider_row(data: Mapping[str, Any], event_type: str) -> ProviderCode | None:
    given = data.get("provider_status")
    if isinstance(given, str):
        row = lookup_provider_code(given)
        if row is not None:
            return row
    status = ev.COURIER_STATE_EVENTS.get(event_type)
    if status is None:
        return lookup_provider_code("other") if given else None
    return provider_code_for_status(status)


def render(
    event: EventRecord | Mapping[str, Any],
    order: Mapping[str, Any],
    location: LocationView,
) -> list[PusherEvent]:
    """The Pusher events for one stored event (often none)."""
    record = event if isinstance(event, EventRecord) else EventRecord.from_dict(dict(event))
    t = record.type
    d = record.data
    order_id = record.order_id
    base: dict[str, Any] = {"order_id": order_id, "seq": record.seq}
    ch = order_channel(order_id)
    out: list[PusherEvent] = []

    def emit(name: str, payload: Mapping[str, Any], channel: str = ch) -> None:
        out.append(PusherEvent(channel, name, {**payload, **base}))

    def tracker(status: str) -> None:
        when = local_time(record.occurred_at, location.timezone)
        emit(ORDER_TRACKER, {"time": when, "status": status})

    if t == ev.ORDER_CREATED:
        emit(
            NEW_ORDER,
            {"status": record.status, "type": order.get("type")},
            location_channel(location.id),
        )
        return out
    if t == "order.accepted" and d.get("confirmation") != 2:
        emit(ORDER_CONFIRMATION, {"confirmation": 1})
    if t == ev.ORDER_ADJUSTED:
        emit(ORDER_CONFIRMATION, {"confirmation": 2})
        emit(ORDER_ADJUSTMENT, adjustment_payload(d, location))
        return out
    if t == "order.rejected":
        emit(ORDER_CONFIRMATION, {"confirmation": 3, "reason": d.get("reason") or ""})
        return out
    if t == "order.cancelled":
        emit(ORDER_CANCELLATION, {})
        emit(
            ORDER_CANCELLATION,
            {"status": record.status, "reason": d.get("reason"), "by": d.get("by")},
            location_channel(location.id),
        )
        return out
    if t in ev.ORDER_STATE_EVENTS:
        state = ev.ORDER_STATE_EVENTS[t].value
        if t in ORDER_UPDATE_EVENTS:
            emit(ORDER_UPDATE, {"order_state_key": uuid4_from(record.event_id)})
        elif state in TRACKED_STATES:
            label = location.label(state, order.get("type"))
            if label is not None:
                tracker(label)
        return out
    if t in ORDER_UPDATE_EVENTS:
        emit(ORDER_UPDATE, {"order_state_key": uuid4_from(record.event_id)})
        return out
    if t == ev.ORDER_NOTIFICATION:
        emit(
            ORDER_NOTIFICATION,
            {
                "notification_id": d.get("notification_id") or uuid4_from(record.event_id),
                "type": d.get("type"),
                "message": d.get("message"),
            },
        )
        return out
    if t == ev.ORDER_ETA_UPDATED:
        emit(
            ORDER_NOTIFICATION,
            {
                "notification_id": uuid4_from(record.event_id),
                "type": "order_time_changed",
                "message": "New estimated time: "
                + str(local_time(d.get("eta") or order.get("available_eta"), location.timezone)),
            },
        )
        return out
    if t == ev.ORDER_NOTE:
        if d.get("text"):
            tracker(str(d["text"]))
        return out
    if t in COURIER_EVENTS:
        row = _provider_row(d, t)
        if row is not None:
            tracker(row.legacy if location.legacy_tracker else row.standard)
        return out
    return out


__all__ = [
    "DEFAULT_TRACKER_LABELS",
    "DELIVERY_TRACKER_LABELS",
    "EVENT_TYPES",
    "NAME",
    "LocationView",
    "PusherEvent",
    "adjustment_payload",
    "location_channel",
    "order_channel",
    "render",
    "uuid4_from",
]
