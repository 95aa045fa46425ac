"""The canonical order and courier lifecycles, as data.

Order states are ranked. A move is decided by :func:`classify_order_move` from the ranks
and the terminal set alone, so the whole machine is this module's tables:

- forward moves (higher rank) are applied, skipping states is allowed;
- a terminal failure (``rejected``, ``cancelled``, ``failed``) replaces any open state;
- terminal states are final, except through an explicit ``reopened`` fact;
- a lower-rank target is a *stale* update: recorded in history, not applied;
- the same state again is a *duplicate*: acknowledged, not recorded.

Courier states have their own ranks plus two side branches (``unassigned`` before pick-up,
``returning`` → ``returned`` after it), spelled out in :data:`COURIER_EXTRA_MOVES`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class OrderStatus(StrEnum):
    DRAFT = "draft"
    PRICED = "priced"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    HELD = "held"
    PREPARING = "preparing"
    READY = "ready"
    HANDED_OFF = "handed_off"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"


ORDER_RANK: Final[dict[OrderStatus, int]] = {
    OrderStatus.DRAFT: 0,
    OrderStatus.PRICED: 10,
    OrderStatus.SUBMITTED: 20,
    OrderStatus.ACCEPTED: 30,
    OrderStatus.HELD: 35,
    OrderStatus.PREPARING: 40,
    OrderStatus.READY: 50,
    OrderStatus.HANDED_OFF: 60,
    OrderStatus.COMPLETED: 90,
    OrderStatus.REJECTED: 100,
    OrderStatus.CANCELLED: 100,
    OrderStatus.FAILED: 100,
}

ORDER_FAILURES: Final[frozenset[OrderStatus]] = frozenset(
    {OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.FAILED}
)
ORDER_TERMINAL: Final[frozenset[OrderStatus]] = ORDER_FAILURES | {OrderStatus.COMPLETED}

# How an order was completed (``completed`` carries ``how``).
COMPLETION_HOW: Final[frozenset[str]] = frozenset({"picked_up", "delivered", "served", "closed"})


class CourierStatus(StrEnum):
    REQUESTED = "requested"
    UNASSIGNED = "unassigned"
    ASSIGNED = "assigned"
    AT_PICKUP = "at_pickup"
    PICKED_UP = "picked_up"
    AT_DROPOFF = "at_dropoff"
    RETURNING = "returning"
    DELIVERED = "delivered"
    RETURNED = "returned"
    CANCELLED = "cancelled"
    FAILED = "failed"


COURIER_RANK: Final[dict[CourierStatus, int]] = {
    CourierStatus.REQUESTED: 0,
    CourierStatus.UNASSIGNED: 5,
    CourierStatus.ASSIGNED: 10,
    CourierStatus.AT_PICKUP: 20,
    CourierStatus.PICKED_UP: 30,
    CourierStatus.AT_DROPOFF: 40,
    CourierStatus.RETURNING: 45,
    CourierStatus.DELIVERED: 50,
    CourierStatus.RETURNED: 60,
    CourierStatus.CANCELLED: 100,
    CourierStatus.FAILED: 100,
}

COURIER_TERMINAL: Final[frozenset[CourierStatus]] = frozenset(
    {
        CourierStatus.DELIVERED,
        CourierStatus.RETURNED,
        CourierStatus.CANCELLED,
        CourierStatus.FAILED,
    }
)
COURIER_FAILURES: Final[frozenset[CourierStatus]] = frozenset(
    {CourierStatus.CANCELLED, CourierStatus.FAILED}
)

# Moves the rank rule alone would call stale or forbid, but which are real:
# a courier dropping the job before pick-up, and the return branch after pick-up.
COURIER_EXTRA_MOVES: Final[frozenset[tuple[CourierStatus, CourierStatus]]] = frozenset(
    {
        (CourierStatus.ASSIGNED, CourierStatus.UNASSIGNED),
        (CourierStatus.AT_PICKUP, CourierStatus.UNASSIGNED),
    }
)
# Moves the rank rule alone would allow, but which cannot happen: once the food is on
# its way back, it is not delivered to the customer any more.
COURIER_FORBIDDEN_MOVES: Final[frozenset[tuple[CourierStatus, CourierStatus]]] = frozenset(
    {(CourierStatus.RETURNING, CourierStatus.DELIVERED)}
)
# A courier may only start returning with the food in hand.
COURIER_RETURN_FROM: Final[frozenset[CourierStatus]] = frozenset(
    {CourierStatus.PICKED_UP, CourierStatus.AT_DROPOFF}
)

# Coupling rules: a courier status implies an order status (DESIGN.md).
COURIER_IMPLIES_ORDER: Final[dict[CourierStatus, tuple[OrderStatus, str | None]]] = {
    CourierStatus.PICKED_UP: (OrderStatus.HANDED_OFF, None),
    CourierStatus.DELIVERED: (OrderStatus.COMPLETED, "delivered"),
}


class Move(StrEnum):
    """The verdict on a requested state change."""

    APPLY = "apply"  # the state changes
    STALE = "stale"  # recorded in history, state unchanged
    DUPLICATE = "duplicate"  # same state again: acknowledged, nothing recorded
    INVALID = "invalid"  # refused (409 invalid_transition)


def classify_order_move(current: OrderStatus, target: OrderStatus) -> Move:
    """Decide a requested order move from the tables alone."""
    if target == current:
        return Move.DUPLICATE
    if current in ORDER_TERMINAL:
        return Move.INVALID
    if target in ORDER_FAILURES:
        return Move.APPLY
    if ORDER_RANK[target] > ORDER_RANK[current]:
        return Move.APPLY
    return Move.STALE


def classify_courier_move(current: CourierStatus, target: CourierStatus) -> Move:
    """Decide a requested courier move from the tables alone."""
    if target == current:
        return Move.DUPLICATE
    if current in COURIER_TERMINAL:
        return Move.INVALID
    if (current, target) in COURIER_EXTRA_MOVES:
        return Move.APPLY
    if (current, target) in COURIER_FORBIDDEN_MOVES:
        return Move.INVALID
    if target in COURIER_FAILURES:
        return Move.APPLY
    if target in (CourierStatus.RETURNING, CourierStatus.RETURNED):
        if current in COURIER_RETURN_FROM or (
            current == CourierStatus.RETURNING and target == CourierStatus.RETURNED
        ):
            return Move.APPLY
        return (
            Move.INVALID
            if COURIER_RANK[current] < COURIER_RANK[CourierStatus.PICKED_UP]
            else Move.STALE
        )
    if current == CourierStatus.RETURNING:
        # Only returned / cancelled / failed leave the return branch (handled above).
        return Move.STALE if COURIER_RANK[target] < COURIER_RANK[current] else Move.INVALID
    if COURIER_RANK[target] > COURIER_RANK[current]:
        return Move.APPLY
    return Move.STALE


def order_status_from_text(value: str) -> OrderStatus | None:
    try:
        return OrderStatus(value)
    except ValueError:
        return None


def courier_status_from_text(value: str) -> CourierStatus | None:
    try:
        return CourierStatus(value)
    except ValueError:
        return None
