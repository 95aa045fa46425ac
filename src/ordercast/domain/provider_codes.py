"""Open Dining's detailed delivery-provider status strings (seed 000), as data.

Each row names one provider event with its standard string, its legacy string (for
merchants on the legacy tracker), the seed's description of each, and the canonical
courier status it means (``None``: a fact that does not move the courier state).
Inbound, ``POST /v1/deliveries/{id}/status`` accepts either string; outbound, the Open
Dining dialect renders ``order_tracker`` from the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ordercast.domain.lifecycle import CourierStatus


@dataclass(frozen=True, slots=True)
class ProviderCode:
    event: str
    standard: str
    legacy: str
    standard_text: str
    legacy_text: str
    courier_status: CourierStatus | None


C = CourierStatus

PROVIDER_CODES: Final[tuple[ProviderCode, ...]] = (
    ProviderCode(
        "Created",
        "delivery_created",
        "delivery_created",
        "Courier: Delivery created",
        "Courier: Delivery Created",
        C.REQUESTED,
    ),
    ProviderCode(
        "Canceled",
        "delivery_canceled",
        "Canceled",
        "Courier: Delivery canceled",
        "Delivery Cancelled",
        C.CANCELLED,
    ),
    ProviderCode(
        "Cancel Failure",
        "delivery_cancel_failed",
        "delivery_cancel_failed",
        "Courier: Delivery could not be canceled",
        "Courier: Delivery could not be cancelled",
        None,
    ),
    ProviderCode(
        "Assigned",
        "courier_confirmed",
        "courier_confirmed",
        "Courier: Delivery assigned",
        "Courier: Delivery Assigned",
        C.ASSIGNED,
    ),
    ProviderCode(
        "Heading To Pickup",
        "courier_ht_pickup",
        "enroute_to_pickup",
        "Courier: Heading to pickup location",
        "Courier: Driver heading to pickup location",
        C.ASSIGNED,
    ),
    ProviderCode(
        "Pickup Arrival",
        "courier_pickup_arrival",
        "courier_confirmed_store_arrival",
        "Courier: Arrived at pickup location",
        "Courier: Arrived at Store",
        C.AT_PICKUP,
    ),
    ProviderCode(
        "Picked Up",
        "courier_picked_up",
        "courier_picked_up",
        "Courier: Delivery picked up",
        "Courier: Order Picked Up",
        C.PICKED_UP,
    ),
    ProviderCode(
        "Heading To Dropoff",
        "courier_ht_dropoff",
        "enroute_to_dropoff",
        "Courier: Heading to dropoff location",
        "Courier: Driver heading to dropoff location",
        C.PICKED_UP,
    ),
    ProviderCode(
        "Dropoff Arrival",
        "courier_dropoff_arrival",
        "courier_confirmed_guest_arrival",
        "Courier: Arrived at dropoff location",
        "Courier: Arrived at Consumer",
        C.AT_DROPOFF,
    ),
    ProviderCode(
        "Dropped Off",
        "courier_dropped_off",
        "Delivered",
        "Courier: Delivery dropped off",
        "Courier: Delivered",
        C.DELIVERED,
    ),
    ProviderCode(
        "Attempted Dropoff",
        "courier_attempted_dropoff",
        "delivery_attempted",
        "Courier: Delivery dropoff attempted",
        "Delivery Attempted",
        None,
    ),
    ProviderCode(
        "Return Started",
        "delivery_return_start",
        "delivery_return_start",
        "Courier: Return started",
        "Courier: Delivery return started",
        C.RETURNING,
    ),
    ProviderCode(
        "Return Canceled",
        "delivery_return_cancel",
        "delivery_return_cancel",
        "Courier: Return canceled",
        "Courier: Delivery return cancelled",
        None,
    ),
    ProviderCode(
        "Heading To Return",
        "courier_ht_return",
        "enroute_to_return",
        "Courier: Heading to return location",
        "Courier: Driver heading to return location",
        C.RETURNING,
    ),
    ProviderCode(
        "Return Arrival",
        "courier_return_arrival",
        "courier_return_arrival",
        "Courier: Arrived at return location",
        "Courier: Driver arrived at return location",
        C.RETURNING,
    ),
    ProviderCode(
        "Returned",
        "delivery_returned",
        "delivery_returned",
        "Courier: Delivery returned",
        "Courier: Delivery will be returned to sender",
        C.RETURNED,
    ),
    ProviderCode(
        "Abandoned",
        "delivery_abandoned",
        "delivery_abandoned",
        "Courier: Delivery abandoned by provider",
        "Courier: Delivery abandoned by provider",
        C.FAILED,
    ),
    ProviderCode(
        "Other",
        "other",
        "other",
        "Courier: Unknown update type",
        "Courier: Unknown update type",
        None,
    ),
)

_BY_STRING: Final[dict[str, ProviderCode]] = {}
for _row in PROVIDER_CODES:
    _BY_STRING.setdefault(_row.standard, _row)
    _BY_STRING.setdefault(_row.legacy, _row)

# For rendering a canonical courier move that arrived without a provider string: the
# first row naming that status is the one a tracker shows.
_BY_STATUS: Final[dict[CourierStatus, ProviderCode]] = {}
for _row in PROVIDER_CODES:
    if _row.courier_status is not None:
        _BY_STATUS.setdefault(_row.courier_status, _row)


def lookup_provider_code(value: str) -> ProviderCode | None:
    """The row for a standard or legacy provider string (exact match), or None."""
    return _BY_STRING.get(value)


def provider_code_for_status(status: CourierStatus) -> ProviderCode | None:
    return _BY_STATUS.get(status)
