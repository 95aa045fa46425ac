"""The ``orderingstack`` dialect: Ordering Stack's STOMP destinations and payloads (seed 004).

Pure: canonical events, the order after them and location changes in, STOMP messages
(destination, message id, headers, JSON body) out. No I/O, no clock. The gateway
(:mod:`ordercast.gateway.stomp`) authorizes subscriptions with :func:`route`, encodes each
message once per destination and splices it to every subscriber.

Destinations (API.md names first, then the shapes Ordering Stack's published client
libraries use, accepted for drop-in compatibility):

==========================================  ===============================================
``/order-changes/{user_uuid}/{order_id}``   that user's own order: the order JSON on every
                                            change; resumable with ``x-since-seq``
``/order-changes/{tenant_id}/{user_uuid}``  (client libraries) every order of that user
``/kds/{tenant_id}/{venue_id}``             apps granted that venue: every submitted and
                                            not closed order, when it appears, changes and
                                            closes (the closing message has ``closed: true``)
``/kds/{tenant_id}/{user_uuid}``            that user's notifications (``OrderEventError``
``/notifications/{tenant_id}/{user_uuid}``  with ``codes[]``, ``OrderMessage``)
``/venue/{tenant_id}/{venue_id}``           apps granted that venue: settings changes
``/venues/{tenant_id}/{venue_id}``          the same (ordering-core's spelling); both are
                                            also open to staff and KDS logins granted it
``/modules/{tenant_id}/{module_id}``        accepted, silent: a login's own module (its
                                            account id; ordering-core subscribes when the
                                            token has a ``MODULE`` claim)
``/steering/{tenant_id}/{venue_id}``        accepted, silent: whoever may follow the venue
                                            (as ``/venues/…``), and customers of the
                                            venue's tenant
==========================================  ===============================================

``/kds/{tenant_id}/{venue_id}`` is also open to staff and KDS logins (accounts) granted the
venue: Ordering Stack's POS integrator logs in as a user and subscribes there.

Order payloads are Ordering Stack's ``IOrder`` shape (``id``, ``tenant``, ``status`` in
Ordering Stack's vocabulary, ``completed``, ``closed``, ``lastChanged``, ``buckets[].venue``,
``buckets[].lines[]``, money as decimal strings) with ordercast's own view in ``extra``
(``x-ordercast-status``, ``x-ordercast-seq``, ``x-ordercast-event``). Every order message
carries the STOMP headers ``seq``, ``order-id`` and ``event-type``. Vocabulary trap: in
Ordering Stack "completed" means the guest submitted the order, "CLOSED" means it is done.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ordercast.domain import events as ev
from ordercast.domain.access import AppPrincipal, UserPrincipal
from ordercast.domain.lifecycle import ORDER_RANK, ORDER_TERMINAL, OrderStatus
from ordercast.domain.order import Order, evolve
from ordercast.errors import Forbidden

NAME: Final = "orderingstack"

# -- mapping tables ---------------------------------------------------------------------------

# canonical order state → Ordering Stack EOrderStatus.
ORDER_STATUS: Final[dict[str, str]] = {
    "draft": "NEW",
    "priced": "NEW",
    "submitted": "COMPLETED",
    "accepted": "VERIFIED",
    "held": "VERIFIED",
    "preparing": "VERIFIED",
    "ready": "DELIVER",
    "handed_off": "DELIVERED",
    "completed": "CLOSED",
    "rejected": "CANCELLED",
    "cancelled": "CANCELLED",
    "failed": "CANCELLED",
}
# handed_off of a delivery order means "handed to the courier".
HANDED_OFF_TO_COURIER: Final = "PICKED"

# canonical order state → EOrderLineStatus of every line.
LINE_STATUS: Final[dict[str, str]] = {
    "draft": "NEW",
    "priced": "NEW",
    "submitted": "NEW",
    "accepted": "CONFIRMED",
    "held": "CONFIRMED",
    "preparing": "PROCESSING",
    "ready": "PROCESSED",
    "handed_off": "PROCESSED",
    "completed": "PROCESSED",
    "rejected": "VOID",
    "cancelled": "VOID",
    "failed": "VOID",
}

ORDER_TYPE: Final[dict[str, str]] = {
    "pickup": "TAKE_AWAY",
    "delivery": "DELIVERY",
    "dine_in": "DINE_IN",
}

# canonical event → INotificationMessage type on the user's notification destinations.
NOTIFICATION_TYPE: Final[dict[str, str]] = {
    ev.ORDER_ERROR: "OrderEventError",
    "order.rejected": "OrderEventError",
    "order.failed": "OrderEventError",
    ev.ORDER_NOTIFICATION: "OrderMessage",
    ev.ORDER_NOTE: "OrderMessage",
}

VENUE_CHANGE_TYPE: Final = "VenueSettingsChanged"

PREFIXES: Final[tuple[str, ...]] = (
    "order-changes",
    "kds",
    "notifications",
    "venue",
    "venues",
    "modules",
    "steering",
)
MAX_DESTINATION_LENGTH: Final = 512
_FORBIDDEN_CHARS: Final = frozenset("*#>?,{}\\ \t\r\n\x00")

# Route kinds.
ORDER: Final = "order"  # /order-changes/{user}/{order}: resumable
USER_ORDERS: Final = "user_orders"  # /order-changes/{tenant}/{user}
KDS_VENUE: Final = "kds_venue"  # /kds/{tenant}/{venue}
NOTIFICATIONS: Final = "notifications"  # /kds/{tenant}/{user}, /notifications/{tenant}/{user}
VENUE: Final = "venue"  # /venue/{tenant}/{venue}, /venues/{tenant}/{venue}
SILENT: Final = "silent"  # /modules/…, /steering/…: accepted, nothing is sent there yet


# -- destinations and who may subscribe -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """What an authorized destination delivers. For :data:`ORDER` the gateway must still
    check that ``order_id`` is an order of ``user_id`` in ``tenant_id`` (needs storage)."""

    kind: str
    destination: str
    tenant_id: str
    user_id: str | None = None
    order_id: str | None = None
    venue_id: str | None = None
    venue_in_tenant: bool = False
    """The gateway must still check that ``venue_id`` is a location of ``tenant_id`` (a
    customer following a venue of its tenant: needs storage)."""

    @property
    def resumable(self) -> bool:
        return self.kind == ORDER


def split_destination(destination: str) -> tuple[str, str, str] | None:
    """``(prefix, first, second)`` for a well-formed ``/prefix/first/second``, else None.

    Wildcards, empty segments, extra segments and control characters are refused."""
    if len(destination) > MAX_DESTINATION_LENGTH or not destination.startswith("/"):
        return None
    if any(c in _FORBIDDEN_CHARS for c in destination):
        return None
    parts = destination[1:].split("/")
    if len(parts) != 3 or not all(parts) or parts[0] not in PREFIXES:
        return None
    if any(p in (".", "..") for p in parts):
        return None
    return parts[0], parts[1], parts[2]


Principal = AppPrincipal | UserPrincipal


def route(destination: str, principal: Principal) -> Route:
    """Authorize a SUBSCRIBE: the :class:`Route` or :class:`~ordercast.errors.Forbidden`.

    Deny by default: users reach only their own streams (staff and KDS logins also their
    granted venues' KDS streams), apps only their granted venues."""
    parts = split_destination(destination)
    if parts is None:
        raise Forbidden(
            f"unknown destination {destination[:200]!r}; use /order-changes/{{user}}/{{order}}, "
            "/kds/{tenant}/{venue}, /kds/{tenant}/{user}, /notifications/{tenant}/{user} "
            "or /venue/{tenant}/{venue}"
        )
    prefix, first, second = parts
    tenant = principal.tenant_id
    venue_kind = SILENT if prefix == "steering" else VENUE
    if isinstance(principal, UserPrincipal):
        user = principal.user_id
        granted = principal.venue_staff and second in principal.location_ids
        if prefix == "order-changes":
            if first == user:
                return Route(ORDER, destination, tenant, user_id=user, order_id=second)
            if first == tenant and second == user:
                return Route(USER_ORDERS, destination, tenant, user_id=user)
        elif first != tenant:
            pass
        elif prefix in ("kds", "notifications") and second == user:
            return Route(NOTIFICATIONS, destination, tenant, user_id=user)
        elif prefix == "kds" and granted:
            return Route(KDS_VENUE, destination, tenant, user_id=user, venue_id=second)
        elif prefix == "modules" and second == user:
            return Route(SILENT, destination, tenant, user_id=user)
        elif prefix in ("venue", "venues", "steering"):
            # Staff and KDS logins: their venues. Customers: only the silent steering
            # destination, for a venue of their tenant (settings stay with staff and apps).
            if granted:
                return Route(venue_kind, destination, tenant, user_id=user, venue_id=second)
            if prefix == "steering" and not principal.venue_staff:
                return Route(
                    venue_kind,
                    destination,
                    tenant,
                    user_id=user,
                    venue_id=second,
                    venue_in_tenant=True,
                )
    elif first == tenant and second in principal.location_ids:
        if prefix == "kds":
            return Route(KDS_VENUE, destination, tenant, venue_id=second)
        if prefix in ("venue", "venues", "steering"):
            return Route(venue_kind, destination, tenant, venue_id=second)
    elif first == tenant and prefix == "modules" and second == principal.app_id:
        return Route(SILENT, destination, tenant)
    raise Forbidden(f"not allowed to subscribe to {destination[:200]!r}")


def order_destinations(order: Mapping[str, Any]) -> dict[str, str]:
    """Every destination an order's change can go to, by route kind."""
    out = {KDS_VENUE: f"/kds/{order['tenant_id']}/{order['location_id']}"}
    user = order.get("user_id")
    if user:
        out[ORDER] = f"/order-changes/{user}/{order['id']}"
        out[USER_ORDERS] = f"/order-changes/{order['tenant_id']}/{user}"
    return out


def notification_destinations(order: Mapping[str, Any]) -> tuple[str, ...]:
    user = order.get("user_id")
    if not user:
        return ()
    tenant = order["tenant_id"]
    return (f"/kds/{tenant}/{user}", f"/notifications/{tenant}/{user}")


# -- payloads ---------------------------------------------------------------------------------


def _money(cents: Any) -> str:
    value = int(cents or 0)
    sign = "-" if value < 0 else ""
    value = abs(value)
    return f"{sign}{value // 100}.{value % 100:02d}"


# By the state's string value: every order change renders with these (an enum lookup and a
# set built per call were a third of rendering an order).
_RANK_OF: Final[dict[str, int]] = {s.value: rank for s, rank in ORDER_RANK.items()}
_TERMINAL: Final[frozenset[str]] = frozenset(s.value for s in ORDER_TERMINAL)
_SUBMITTED_RANK: Final = ORDER_RANK[OrderStatus.SUBMITTED]
_ACCEPTED_RANK: Final = ORDER_RANK[OrderStatus.ACCEPTED]


def _rank(status: str | None) -> int | None:
    return _RANK_OF.get(status) if status is not None else None


def _is_terminal(status: str | None) -> bool:
    return status in _TERMINAL


def _line(item: Mapping[str, Any], status: str) -> dict[str, Any]:
    quantity = int(item.get("quantity", 1) or 1)
    total = item.get("total_after_surcounts", int(item.get("unit_price", 0)) * quantity)
    return {
        "id": item.get("uuid"),
        "productId": item.get("pos_id"),
        "product": {"name": item.get("name")},
        "productConfig": {
            "options": [
                {
                    "name": option.get("name"),
                    "variants": [
                        {"name": v.get("name"), "price": _money(v.get("price", 0))}
                        for v in option.get("variants", [])
                    ],
                }
                for option in item.get("options", [])
            ]
        },
        "quantity": quantity,
        "price": _money(item.get("unit_price", 0)),
        "total": _money(total),
        "status": LINE_STATUS.get(status, "NEW"),
        "comments": [item["notes"]] if item.get("notes") else [],
        "extra": {},
    }


def ios_order(order: Mapping[str, Any], event: ev.EventRecord | None = None) -> dict[str, Any]:
    """The order (``Order.to_dict()`` or the public Order resource) as Ordering Stack's
    ``IOrder``."""
    status = str(order.get("status"))
    rank = _rank(status)
    closed = _is_terminal(status)
    os_status = ORDER_STATUS.get(status, "NEW")
    if status == "handed_off" and order.get("type") == "delivery":
        os_status = HANDED_OFF_TO_COURIER
    users = []
    if order.get("user_id"):
        consumer = order.get("consumer") or {}
        users.append(
            {
                "userId": order["user_id"],
                "roles": ["OWNER"],
                "name": consumer.get("name"),
                "phone": consumer.get("phone"),
                "email": consumer.get("email"),
            }
        )
    status_info = order.get("phase") or order.get("rejection_reason")
    cancellation = order.get("cancellation") or {}
    if status == "cancelled" and cancellation.get("reason"):
        status_info = cancellation["reason"]
    doc: dict[str, Any] = {
        "tenant": order.get("tenant_id"),
        "id": order.get("id"),
        "extId": order.get("external_order_ref"),
        "created": order.get("created_at"),
        "lastChanged": order.get("updated_at"),
        "due": order.get("required_at") or order.get("available_eta"),
        "source": "APP",
        "orderType": ORDER_TYPE.get(str(order.get("type")), "TAKE_AWAY"),
        "status": os_status,
        "statusInfo": status_info,
        "completed": rank is not None and rank >= _SUBMITTED_RANK,
        "verified": rank is not None and rank >= _ACCEPTED_RANK,
        "closed": closed,
        "locked": False,
        "closedDate": order.get("updated_at") if closed else None,
        "total": _money(order.get("total", 0)),
        "editTotal": _money(order.get("total", 0)),
        "users": users,
        "comments": [order["notes"]] if order.get("notes") else [],
        "buckets": [
            {
                "venue": order.get("location_id"),
                "lines": [_line(item, status) for item in order.get("items", [])],
                "extra": {},
            }
        ],
        "extra": {
            "x-ordercast-status": status,
            "x-ordercast-seq": str(order.get("version", 0)),
            "x-source": order.get("created_by"),
        },
    }
    if event is not None:
        doc["extra"]["x-ordercast-event"] = event.type
        doc["extra"]["x-ordercast-seq"] = str(event.seq)
    return doc


def notification(event: ev.EventRecord, order: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``INotificationMessage`` an event sends to the order's user, or None."""
    kind = NOTIFICATION_TYPE.get(event.type)
    user = order.get("user_id")
    if kind is None or not user:
        return None
    data = event.data
    base: dict[str, Any] = {
        "type": kind,
        "users": [user],
        "orderId": event.order_id,
        "correlationId": event.event_id,
        "event": {"correlationId": event.event_id, "user": user, "orderId": event.order_id},
    }
    if kind == "OrderMessage":
        base["message"] = data.get("message") or data.get("text") or ""
        if data.get("type"):
            base["messageType"] = data["type"]
        return base
    raw_errors = data.get("errors") or []
    codes = [
        {
            "code": str(e.get("code") or "error"),
            "message": str(e.get("message") or ""),
            "args": e.get("args"),
        }
        for e in raw_errors
        if isinstance(e, Mapping)
    ]
    if not codes:
        code = data.get("code") or event.type.removeprefix("order.")
        codes = [{"code": str(code), "message": str(data.get("reason") or ""), "args": None}]
    base["message"] = next((c["message"] for c in codes if c["message"]), None) or (
        f"order {event.type.removeprefix('order.')}"
    )
    base["codes"] = codes
    return base


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StompMessage:
    """One MESSAGE to encode once and send to every subscriber of ``destination``."""

    destination: str
    message_id: str
    body: str
    headers: tuple[tuple[str, str], ...]
    seq: int | None = None
    order_id: str | None = None
    #: The order's location (a user's multi-order streams filter on it).
    location_id: str | None = None


def _std_dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _order_headers(event: ev.EventRecord) -> tuple[tuple[str, str], ...]:
    return (("seq", str(event.seq)), ("order-id", event.order_id), ("event-type", event.type))


def _status_before(event: ev.EventRecord, previous: ev.EventRecord | None) -> str | None:
    if event.type == ev.ORDER_CREATED:
        return None
    if event.type in ev.ORDER_STATE_EVENTS or event.type == ev.ORDER_REOPENED:
        before = event.data.get("from")
        if isinstance(before, str):
            return before
    if previous is not None:
        return previous.status
    return event.status  # a fact (or a courier event) leaves the order's state as it was


def kds_visible(status: str | None) -> bool:
    """Whether the venue's KDS stream shows an order in ``status``: submitted, not closed."""
    rank = _rank(status)
    return rank is not None and rank >= _SUBMITTED_RANK and not _is_terminal(status)


def render_order_change(
    order: Mapping[str, Any],
    events: Sequence[ev.EventRecord],
    wanted: Callable[[str], bool] | None = None,
    dumps: Callable[[Any], str] = _std_dumps,
) -> list[StompMessage]:
    """The messages one committed change sends: per event, the order JSON to the order and
    KDS destinations, and notifications to the user's notification destinations.

    ``order`` is the order after the change (every event of the batch carries it).
    ``wanted(destination)`` skips rendering for destinations nobody subscribes to.
    ``dumps`` encodes a body (compact JSON text; the standard library's by default: the
    gateway passes a faster encoder of the same output).
    """
    want = wanted or (lambda _d: True)
    dests = order_destinations(order)
    notify_dests = [d for d in notification_destinations(order) if want(d)]
    order_dests = [(kind, d) for kind, d in dests.items() if kind != KDS_VENUE and want(d)]
    kds = dests[KDS_VENUE] if want(dests[KDS_VENUE]) else None
    location = order.get("location_id")
    out: list[StompMessage] = []
    previous: ev.EventRecord | None = None
    for event in events:
        headers = _order_headers(event)
        body: str | None = None
        show_kds = kds is not None and (
            kds_visible(_status_before(event, previous)) or kds_visible(event.status)
        )
        if order_dests or show_kds:
            body = dumps(ios_order(order, event))
        for kind, destination in order_dests:
            assert body is not None
            out.append(
                StompMessage(
                    destination,
                    f"{event.order_id}-{event.seq}-{kind[0]}",
                    body,
                    headers,
                    event.seq,
                    event.order_id,
                    location,
                )
            )
        if show_kds and kds is not None and body is not None:
            out.append(
                StompMessage(
                    kds,
                    f"{event.order_id}-{event.seq}-k",
                    body,
                    headers,
                    event.seq,
                    event.order_id,
                    location,
                )
            )
        if notify_dests:
            note = notification(event, order)
            if note is not None:
                note_body = dumps(note)
                for destination in notify_dests:
                    out.append(
                        StompMessage(
                            destination,
                            f"{event.order_id}-{event.seq}-n{destination[1]}",
                            note_body,
                            headers,
                            event.seq,
                            event.order_id,
                            location,
                        )
                    )
        previous = event
    return out


def render_location_change(location: Mapping[str, Any]) -> list[StompMessage]:
    """``PATCH /v1/locations/{id}`` → one message on ``/venue/{tenant}/{venue}`` and the same
    on its alias ``/venues/{tenant}/{venue}``."""
    destination = f"/venue/{location['tenant_id']}/{location['id']}"
    body = {
        "type": VENUE_CHANGE_TYPE,
        "tenant": location.get("tenant_id"),
        "venue": location.get("id"),
        "name": location.get("name"),
        "timezone": location.get("timezone"),
        "settings": location.get("settings") or {},
        "lastChanged": location.get("updated_at"),
    }
    message_id = f"{location['id']}-{location.get('updated_at', '')}"
    encoded = _std_dumps(body)
    headers = (("event-type", "venue.changed"),)
    return [
        StompMessage(destination, message_id, encoded, headers, location_id=location["id"]),
        StompMessage(
            "/venues" + destination[len("/venue") :],
            message_id,
            encoded,
            headers,
            location_id=location["id"],
        ),
    ]


# -- replay -----------------------------------------------------------------------------------

SNAPSHOT_HEADER: Final = ("x-snapshot", "true")


def snapshot_statuses(kind: str) -> tuple[str, ...] | None:
    """The order states an ``x-snapshot: true`` subscription to a destination of route
    ``kind`` starts with (the venue's KDS board: submitted and not closed; a user's or one
    order's destination: not closed), or None where a snapshot means nothing (notification
    streams are events, not state)."""
    if kind == KDS_VENUE:
        return tuple(s.value for s in OrderStatus if kds_visible(s.value))
    if kind in (USER_ORDERS, ORDER):
        return tuple(s.value for s in OrderStatus if not _is_terminal(s.value))
    return None


def snapshot_message(
    destination: str, order: Mapping[str, Any], last: ev.EventRecord
) -> StompMessage | None:
    """The message that shows ``order`` (its state now, ``last`` its latest event) on
    ``destination`` at the start of an ``x-snapshot`` subscription: the live message of its
    latest event (same id, seq, body) with the header ``x-snapshot: true``."""
    for message in render_order_change(order, [last], lambda d: d == destination):
        if message.destination == destination:
            return StompMessage(
                message.destination,
                message.message_id,
                message.body,
                (*message.headers, SNAPSHOT_HEADER),
                message.seq,
                message.order_id,
            )
    return None


def snapshots(events: Iterable[ev.EventRecord]) -> list[tuple[ev.EventRecord, dict[str, Any]]]:
    """Each stored event with the order as live subscribers saw it: the state after the
    commit that appended it (events of one commit share ``recorded_at``).

    Rebuilt by folding the stream from ``order.created`` (whose data holds the order at seq
    0) with the domain's own :func:`~ordercast.domain.order.evolve`. Events before a missing
    ``order.created`` cannot be folded; ValueError then.
    """
    ordered = sorted(events, key=lambda e: e.seq)
    if not ordered:
        return []
    first = ordered[0]
    if first.type != ev.ORDER_CREATED or "order" not in first.data:
        raise ValueError("the stream must start with order.created to rebuild snapshots")
    state = Order.from_dict(dict(first.data["order"]))
    after: list[dict[str, Any]] = []
    for event in ordered:
        state = evolve(
            state, ev.NewEvent(event.type, dict(event.data), event.occurred_at), event.recorded_at
        )
        after.append(state.to_dict())
    out: list[tuple[ev.EventRecord, dict[str, Any]]] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1].recorded_at == ordered[i].recorded_at:
            j += 1
        for k in range(i, j + 1):
            out.append((ordered[k], after[j]))
        i = j + 1
    return out


def replay_order_messages(
    destination: str, events: Iterable[ev.EventRecord], after_seq: int
) -> list[StompMessage]:
    """Messages an ``/order-changes/{user}/{order}`` subscriber missed after ``after_seq``,
    identical to the live ones (same ids, headers, bodies)."""
    out: list[StompMessage] = []
    for event, order in snapshots(events):
        if event.seq <= after_seq:
            continue
        for message in render_order_change(order, [event], lambda d: d == destination):
            out.append(message)
    return out
