"""The Order aggregate (with its courier deliveries) and the fold that evolves it.

``Order`` is plain data, JSON-shaped so storage can keep it as a document. Events are
applied by :func:`evolve`; which events a command produces is :mod:`ordercast.domain.decide`.
Times are ISO 8601 strings in UTC; money is integer cents.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import Any

from ordercast.domain import events as ev
from ordercast.domain.lifecycle import ORDER_TERMINAL, OrderStatus
from ordercast.domain.pos_flow import POS_KEYS, PosState


@dataclass(slots=True)
class Delivery:
    id: str
    order_id: str
    status: str
    provider: str | None
    created_at: str
    updated_at: str
    provider_status: str | None = None
    location: dict[str, Any] | None = None
    eta: str | None = None
    proof: str | dict[str, Any] | None = None
    refund: dict[str, Any] | None = None
    # Provider details a partner reports (Doshii: driver_name, driver_phone, tracking_url,
    # display_id, phase, failed_reason, delivery_order_id), merged update by update.
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.as_dict()
        for name in _DELIVERY_CONTAINERS:
            if d[name] is not None:
                d[name] = _json_copy(d[name])
        return d

    def as_dict(self) -> dict[str, Any]:
        """Like :meth:`Order.as_dict`: no copies of the dicts in it; never change them."""
        return dict(zip(_DELIVERY_FIELDS, _delivery_values(self), strict=True))


@dataclass(slots=True)
class Order:
    id: str
    tenant_id: str
    location_id: str
    status: str
    version: int
    type: str
    created_at: str
    updated_at: str
    created_by: str | None = None  # app id
    user_id: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    unapproved_items: list[dict[str, Any]] = field(default_factory=list)
    surcounts: list[dict[str, Any]] = field(default_factory=list)
    consumer: dict[str, Any] = field(default_factory=dict)
    required_at: str | None = None
    available_eta: str | None = None
    external_order_ref: str | None = None
    pos_ref: str | None = None
    notes: str | None = None
    phase: str | None = None
    total: int = 0
    fire_order_in_seconds: int | None = None
    confirmation: int | None = None
    rejection_reason: str | None = None
    rejection_code: str | None = None
    cancel_requested: dict[str, Any] | None = None
    cancellation: dict[str, Any] | None = None
    completed_how: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    previous_status: str | None = None  # the open state a terminal one replaced
    # POS flow (domain/pos_flow.py), a value of its own; flat keys in the document.
    pos: PosState = field(default_factory=PosState)
    deliveries: dict[str, Delivery] = field(default_factory=dict)

    # The POS fields by their document names (read-only: ``pos`` is replaced, not changed).
    @property
    def pos_flow(self) -> bool:
        return self.pos.flow

    @property
    def pos_phase(self) -> str | None:
        return self.pos.phase

    @property
    def pos_callbacks(self) -> dict[str, str]:
        return self.pos.callbacks

    @property
    def fire_at(self) -> str | None:
        return self.pos.fire_at

    @property
    def fired_at(self) -> str | None:
        return self.pos.fired_at

    @property
    def fired_by(self) -> str | None:
        return self.pos.fired_by

    @property
    def state(self) -> OrderStatus:
        return OrderStatus(self.status)

    @property
    def is_closed(self) -> bool:
        return self.state in ORDER_TERMINAL

    def to_dict(self) -> dict[str, Any]:
        # What ``dataclasses.asdict`` gave (a deep copy), without its generic recursion:
        # the fields typed as lists or dicts are copied, the others are scalars.
        d = dict(zip(_ORDER_FIELDS, _order_values(self), strict=True))
        for name in _ORDER_CONTAINERS:
            if d[name] is not None:
                d[name] = _json_copy(d[name])
        d.update(self.pos.items())
        d["pos_callbacks"] = dict(self.pos.callbacks)
        d["deliveries"] = {k: v.to_dict() for k, v in self.deliveries.items()}
        return d

    def as_dict(self) -> dict[str, Any]:
        """The same keys and values as :meth:`to_dict`, but the lists and dicts in it are
        this order's own, not copies: for a caller that serializes it at once (to JSON)
        and keeps nothing. Never change anything in it."""
        d = dict(zip(_ORDER_FIELDS, _order_values(self), strict=True))
        d.update(self.pos.items())
        d["deliveries"] = {k: v.as_dict() for k, v in self.deliveries.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Order:
        data = dict(d)
        deliveries = {k: Delivery(**v) for k, v in data.pop("deliveries", {}).items()}
        pos = PosState.from_doc(data)
        for key in POS_KEYS:
            data.pop(key, None)
        return cls(**data, pos=pos, deliveries=deliveries)


_ORDER_FIELDS = tuple(f.name for f in fields(Order) if f.name not in ("pos", "deliveries"))
_DELIVERY_FIELDS = tuple(f.name for f in fields(Delivery))
_ALL_ORDER_FIELDS = tuple(f.name for f in fields(Order))
_order_values = attrgetter(*_ORDER_FIELDS)
_delivery_values = attrgetter(*_DELIVERY_FIELDS)
_all_order_values = attrgetter(*_ALL_ORDER_FIELDS)


def _containers(cls: type) -> tuple[str, ...]:
    """The fields of ``cls`` typed as lists or dicts (the others hold scalars)."""
    return tuple(
        f.name
        for f in fields(cls)
        if f.name != "deliveries" and ("list[" in str(f.type) or "dict[" in str(f.type))
    )


_ORDER_CONTAINERS = _containers(Order)
_DELIVERY_CONTAINERS = _containers(Delivery)
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, tuples, scalars)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {k: v if type(v) in _SCALARS else _json_copy(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else _json_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_json_copy(v) for v in value)
    return value


def _clone(order: Order) -> Order:
    """A shallow copy of ``order``: its lists, dicts and deliveries are shared, so whoever
    changes the copy replaces them rather than changing them in place (:func:`evolve`)."""
    return Order(*_all_order_values(order))


def item_totals(item: dict[str, Any]) -> tuple[int, int]:
    """(total before surcounts, total after) of one line, in cents."""
    quantity = int(item.get("quantity", 1))
    options_price = sum(
        int(v.get("price", 0)) for o in item.get("options", []) for v in o.get("variants", [])
    )
    before = (int(item.get("unit_price", 0)) + options_price) * quantity
    after = before + sum(int(s.get("value", 0)) for s in item.get("surcounts", []))
    return before, after


def order_total(items: list[dict[str, Any]], surcounts: list[dict[str, Any]]) -> int:
    return sum(item_totals(i)[1] for i in items) + sum(int(s.get("value", 0)) for s in surcounts)


def with_totals(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        before, after = item_totals(item)
        out.append({**item, "total_before_surcounts": before, "total_after_surcounts": after})
    return out


def evolve(order: Order, event: ev.NewEvent, recorded_at: str) -> Order:
    """The order after one event. Returns a new object; the input is not changed.

    Copy on write: the new order shares the input's lists, dicts and deliveries, and every
    change below assigns a new value to a field (or a copied delivery) instead of changing
    a shared one in place; the full deep copy this replaced was a measurable part of every
    change (docs/benchmarks.md, "Figures behind code comments")."""
    o = _clone(order)
    o.version += 1
    o.updated_at = recorded_at
    d = event.data
    t = event.type
    if t in ev.ORDER_STATE_EVENTS:
        target = ev.ORDER_STATE_EVENTS[t]
        if target in ORDER_TERMINAL and not o.is_closed:
            o.previous_status = o.status
        o.status = target.value
        if target is OrderStatus.COMPLETED:
            o.completed_how = d.get("how")
        if target in (OrderStatus.REJECTED, OrderStatus.FAILED):
            o.rejection_reason = d.get("reason") or o.rejection_reason
            o.rejection_code = d.get("code") or o.rejection_code
        if target is OrderStatus.CANCELLED:
            o.cancellation = {"reason": d.get("reason"), "by": d.get("by")}
        if d.get("errors"):
            o.errors = list(d["errors"])
        if "confirmation" in d:
            o.confirmation = d["confirmation"]
        if "total" in d:
            o.total = int(d["total"])
        if "fire_order_in_seconds" in d:
            o.fire_order_in_seconds = d["fire_order_in_seconds"]
    elif t == ev.ORDER_REOPENED:
        o.status = d["to"]
        o.previous_status = None
        o.cancellation = None
        o.completed_how = None
    elif t == ev.ORDER_ADJUSTED:
        o.confirmation = 2
        removed_items = set(d.get("removed_items", []))
        removed_options = set(d.get("removed_options", []))
        kept = [
            {
                **item,
                "options": [
                    opt for opt in item.get("options", []) if opt.get("name") not in removed_options
                ],
            }
            for item in o.items
            if item.get("uuid") not in removed_items
        ]
        o.items = with_totals(kept)
        o.total = order_total(o.items, o.surcounts)
        if d.get("available_eta"):
            o.available_eta = d["available_eta"]
        if d.get("required_at"):
            o.required_at = d["required_at"]
    elif t == ev.ORDER_ETA_UPDATED:
        o.available_eta = d.get("available_eta")
    elif t == ev.ORDER_CANCEL_REQUESTED:
        o.cancel_requested = {"reason": d.get("reason"), "by": d.get("by")}
    elif t == ev.ORDER_NOTE:
        o.phase = d.get("text")
    elif t == ev.ORDER_ERROR:
        o.errors = list(d.get("errors", []))
    elif t in ev.COURIER_STATE_EVENTS or t in ev.DELIVERY_FACTS:
        _evolve_delivery(o, t, d, recorded_at)
    # order.created, order.notification, order.payment_updated, order.stale_update:
    # recorded in the stream, no field of the resource changes beyond version.
    o.pos = o.pos.evolved(o.status, event, recorded_at)
    return o


def _evolve_delivery(o: Order, t: str, d: dict[str, Any], recorded_at: str) -> None:
    # ``o`` shares its deliveries with the order it was copied from (``_clone``): the
    # mapping and the changed delivery are replaced, never changed in place.
    delivery_id = d["delivery_id"]
    if t == "delivery.requested" and delivery_id not in o.deliveries:
        o.deliveries = {
            **o.deliveries,
            delivery_id: Delivery(
                id=delivery_id,
                order_id=o.id,
                status="requested",
                provider=d.get("provider"),
                created_at=recorded_at,
                updated_at=recorded_at,
                provider_status=d.get("provider_status"),
            ),
        }
        return
    dl = replace(o.deliveries[delivery_id])
    o.deliveries = {**o.deliveries, delivery_id: dl}
    dl.updated_at = recorded_at
    if t in ev.COURIER_STATE_EVENTS:
        dl.status = ev.COURIER_STATE_EVENTS[t].value
    if d.get("provider_status"):
        dl.provider_status = d["provider_status"]
    if d.get("details"):
        dl.details = {**(dl.details or {}), **d["details"]}
    if t == ev.DELIVERY_LOCATION_UPDATED:
        dl.location = d.get("location")
    elif t == ev.DELIVERY_ETA_UPDATED:
        dl.eta = d.get("eta")
    elif t == ev.DELIVERY_PROOF_ADDED:
        dl.proof = d.get("proof")
    elif t == ev.DELIVERY_REFUND_REQUESTED:
        dl.refund = d.get("refund")
