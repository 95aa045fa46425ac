"""The oracle's routing rules: which subscriber may see which event, under which name.

Independent of the gateways and dialects (nothing here imports ``ordercast``): written from
API.md ("Real-time names"), DESIGN.md (lifecycle, guarantees), research/platforms.md §3.5
and §3.6, and the seeds (000 Open Dining, 001 RBI, 002 Ordatic's ✔️/✖️ table, 003 Doshii,
004 Ordering Stack). Where those are silent, the rule says ``# docs silent:`` and names what
was read instead.

Input is one order's event log as ``GET /v1/orders/{id}/events`` returns it (``seq``,
``type``, ``status`` = the order's status right after the event, ``data``) plus the order's
own fields. Output: the expected messages for one subscriber, in ``seq`` order, each as
``(seq, name)``; ``name`` is the wire name the subscriber sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Event = Mapping[str, Any]
Expected = list[tuple[int, str]]

RANK = {
    "draft": 0, "priced": 10, "submitted": 20, "accepted": 30, "held": 35, "preparing": 40,
    "ready": 50, "handed_off": 60, "completed": 90,
    "rejected": 100, "cancelled": 100, "failed": 100,
}  # fmt: skip
TERMINAL = {"completed", "rejected", "cancelled", "failed"}

# -- Pusher, Open Dining (seed 000; API.md "Pusher channels") -----------------------------

# Tracker labels for canonical states when the location sets none.
# docs silent: seed 000 shows example strings only; which states have a default label is
# dialects/opendining.py DEFAULT_TRACKER_LABELS (accepted has none: it is order_confirmation).
DEFAULT_TRACKED = {"held", "preparing", "ready", "handed_off", "completed", "failed"}
COURIER_STATES = {
    "delivery.requested", "delivery.assigned", "delivery.at_pickup", "delivery.picked_up",
    "delivery.at_dropoff", "delivery.delivered", "delivery.cancelled", "delivery.failed",
    "delivery.returning", "delivery.returned", "delivery.unassigned", "delivery.updated",
}  # fmt: skip


def pusher_order_channel(events: list[Event], labels: Mapping[str, str]) -> Expected:
    """``private-o-{order}``: order_confirmation, order_adjustment, order_tracker,
    order_notification, order_update, order_cancellation (API.md)."""
    out: Expected = []
    for e in events:
        t, seq, d = e["type"], e["seq"], e["data"]
        state = t.removeprefix("order.")
        if t == "order.accepted" and d.get("confirmation") != 2:
            out.append((seq, "order_confirmation"))  # {confirmation: 1}
        if t == "order.adjusted":  # {confirmation: 2} then the adjustment
            out += [(seq, "order_confirmation"), (seq, "order_adjustment")]
        elif t == "order.rejected":  # {confirmation: 3, reason}
            out.append((seq, "order_confirmation"))
        elif t == "order.cancelled":
            out.append((seq, "order_cancellation"))
        elif t in ("order.priced", "order.payment_updated"):
            out.append((seq, "order_update"))
        elif t in ("order.notification", "order.eta_updated"):
            out.append((seq, "order_notification"))
        elif t == "order.note" and d.get("text"):
            out.append((seq, "order_tracker"))  # the free text is the tracker status
        elif t in COURIER_STATES:
            out.append((seq, "order_tracker"))  # the provider status string
        elif (
            state in RANK and t != "order.created" and (state in labels or state in DEFAULT_TRACKED)
        ):
            out.append((seq, "order_tracker"))
    return out


def pusher_location_channel(events: list[Event]) -> Expected:
    """``presence-r-{location}``: new_order and order_cancellation (platforms.md §3.5:
    the restaurant gets new_order and order_cancellation)."""
    out: Expected = []
    for e in events:
        if e["type"] == "order.created":
            out.append((e["seq"], "new_order"))
        elif e["type"] == "order.cancelled":
            out.append((e["seq"], "order_cancellation"))
    return out


# -- STOMP, Ordering Stack (seed 004; API.md "STOMP destinations") -----------------------


def stomp_order(events: list[Event]) -> Expected:
    """``/order-changes/{user}/{order}`` and ``/order-changes/{tenant}/{user}``: the order
    on every change (every event, headers ``seq``, ``order-id``, ``event-type``)."""
    return [(e["seq"], e["type"]) for e in events]


def open_on_kds(status: str | None) -> bool:
    return status is not None and RANK[status] >= RANK["submitted"] and status not in TERMINAL


def stomp_kds_venue(events: list[Event]) -> Expected:
    """``/kds/{tenant}/{venue}``: every submitted and not closed order, when it appears,
    changes and closes (platforms.md §3.5 "→submitted: /kds message"; §3.6 "kds gets
    submitted→ready and adjustments"). docs silent on the exact cut: an event shows when
    the order is open on the board before or after it (the closing change included), as
    dialects/orderingstack.py's module docstring states."""
    out: Expected = []
    before: str | None = None
    for e in events:
        if open_on_kds(before) or open_on_kds(e["status"]):
            out.append((e["seq"], e["type"]))
        before = e["status"]
    return out


# docs silent: seed 004 names OrderEventError and OrderMessage notifications; which canonical
# events become which is dialects/orderingstack.py NOTIFICATION_TYPE.
NOTIFYING = {"order.error", "order.rejected", "order.failed", "order.notification", "order.note"}


def stomp_notifications(events: list[Event]) -> Expected:
    """``/kds/{tenant}/{user}`` and ``/notifications/{tenant}/{user}``: the user's
    notifications (errors and messages) about their orders."""
    return [(e["seq"], e["type"]) for e in events if e["type"] in NOTIFYING]


# -- webhooks -----------------------------------------------------------------------------

# Seed 002's table: eventType -> app kinds that receive it (channel, pos, rider, loyalty).
ORDATIC_SCOPE = {
    "order-accepted": {"pos"},
    "order-in-kitchen": {"channel", "rider", "loyalty"},
    "order-ready-to-pick-up": {"channel", "rider"},
    "order-picked-up": {"channel"},
    "order-served": {"channel"},
    "order-canceled": {"pos", "rider", "loyalty"},
    "rider-created": {"channel", "pos"},
    "rider-picking": {"channel", "pos"},
    "rider-delivering": {"channel", "pos"},
    "rider-completed": {"channel", "pos"},
    "rider-error": {"channel", "pos"},
    "rider-proof-delivery": {"channel"},
    "rider-refund": {"channel"},
}


def _ordatic_names(e: Event, before: str | None, order: Mapping[str, Any]) -> list[str]:
    """platforms.md §3.5, Ordatic column."""
    t, d, status = e["type"], e["data"], e["status"]
    skipped_accept = before is None or RANK.get(before, -1) < RANK["accepted"]
    if t == "order.created":
        names = []
        if RANK["submitted"] <= RANK[status] < RANK["completed"]:
            names.append("order-accepted")
        if RANK["accepted"] <= RANK[status] < RANK["completed"]:
            names.append("order-in-kitchen")
        return names
    table = {
        "order.submitted": ["order-accepted"],
        "order.accepted": ["order-in-kitchen"],
        "order.cancelled": ["order-canceled"],
        "order.rejected": ["order-canceled"],
        "order.failed": ["order-canceled"],
        "delivery.requested": ["rider-created"],
        "delivery.assigned": ["rider-picking"],
        "delivery.picked_up": ["rider-delivering"],
        "delivery.delivered": ["rider-completed"],
        "delivery.failed": ["rider-error"],
        "delivery.cancelled": ["rider-error"],
        "delivery.returning": ["rider-error"],
        "delivery.proof_added": ["rider-proof-delivery"],
        "delivery.refund_requested": ["rider-refund"],
    }
    if t in table:
        return table[t]
    if t in ("order.held", "order.preparing"):  # "order-in-kitchen (if not sent yet)"
        return ["order-in-kitchen"] if skipped_accept else []
    if t == "order.ready":  # "Channel, Rider; delivery-by-location"
        return ["order-ready-to-pick-up"] if order.get("type") == "delivery" else []
    if t == "order.completed":  # picked-up (takeaway) / served (dine-in)
        how = d.get("how")
        if how == "picked_up" or (how is None and order.get("type") == "pickup"):
            return ["order-picked-up"]
        if how == "served" or (how is None and order.get("type") == "dine_in"):
            return ["order-served"]
        return []  # docs silent: completed(how=delivered) is rider-completed's business
    if t == "delivery.at_pickup":  # rider-picking, unless assigned already said it
        return ["rider-picking"] if d.get("from") in (None, "requested", "unassigned") else []
    return []


# Seed 001's lifecycle statuses for the ORDER_EVENT webhook; submitted, handed_off and facts
# have none (API.md: "every lifecycle status also goes out as ORDER_EVENT").
RBI_STATUS = {
    "order.created": "CREATED", "order.priced": "PRICED", "order.accepted": "COMMITTED",
    "order.held": "COMMITTED", "order.preparing": "PREPARING", "order.ready": "PREPARED",
    "order.completed": "DONE", "order.cancelled": "CANCELED", "order.rejected": "ERROR",
    "order.failed": "ERROR",
}  # fmt: skip


def _rbi_names(e: Event, before: str | None, order: Mapping[str, Any], kind: str) -> list[str]:
    names = []
    if kind == "pos" and order.get("pos_flow"):  # API.md POS flow: price → commit → fire
        t = e["type"]
        if t == "order.created":
            first = e["data"].get("status")
            if first == "draft":
                names.append("PRICE_ORDER")
            elif first == "submitted":
                names.append("COMMIT_ORDER")
        elif t == "order.submitted":
            names.append("COMMIT_ORDER")
        elif t == "order.fire_requested":
            names.append("FIRE_ORDER")
    status = RBI_STATUS.get(e["type"])
    # docs silent: held says COMMITTED only when the order skipped accepted (else COMMITTED
    # was sent already); dialects/rbi.py.
    held_after_accept = (
        e["type"] == "order.held" and before is not None and RANK[before] >= RANK["accepted"]
    )
    if status is not None and not held_after_accept:
        names.append(f"ORDER_EVENT:{status}")
    return names


def webhook(
    dialect: str,
    kind: str,
    events: list[Event],
    order: Mapping[str, Any],
    subscribed_at: int | None = None,
) -> Expected:
    """What one endpoint of an app of ``kind`` receives for this order, as (seq, name);
    ``subscribed_at``: Doshii only, the order version when the app subscribed (None: not
    subscribed)."""
    out: Expected = []
    before: str | None = None
    for e in events:
        seq, t = e["seq"], e["type"]
        if dialect == "ordercast":  # every canonical event (API.md)
            out.append((seq, t))
        elif dialect == "ordatic":
            out += [(seq, n) for n in _ordatic_names(e, before, order) if kind in ORDATIC_SCOPE[n]]
        elif dialect == "rbi":
            out += [(seq, n) for n in _rbi_names(e, before, order, kind)]
        elif (  # seed 003: subscribed apps only; a stale update changes nothing
            dialect == "doshii"
            and subscribed_at is not None
            and seq > subscribed_at
            and not t.endswith("stale_update")
        ):
            out.append((seq, "order_created" if t == "order.created" else "order_updated"))
        before = e["status"]
    return out


def wire_name(dialect: str, body: Mapping[str, Any]) -> tuple[str, str | None]:
    """(name, order id) of one received webhook body, in the terms of :func:`webhook`."""
    if dialect == "ordercast":
        return str(body["type"]), body["data"]["order_id"]
    if dialect == "ordatic":
        return str(body["eventType"]), body["data"]["orderId"]
    if dialect == "rbi":
        if body["eventType"] == "ORDER_EVENT":
            return f"ORDER_EVENT:{body['status']}", body["orderId"]
        return str(body["eventType"]), body["orderId"]
    if dialect == "doshii":
        return str(body["type"]), body["data"]["id"]
    raise AssertionError(dialect)
