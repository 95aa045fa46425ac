"""Ordering Stack's order pulls, in the ``IOrder`` shape the STOMP messages use.

* ``GET /ordering-api/api/orders/venue/{venue}``: the venue's open orders (submitted and
  not closed: what its KDS stream shows), for an app granted the venue or a staff/KDS login
  granted it. Ordering Stack's POS integrator and KDS pull this after (re)connecting.
* ``GET /ordering-api/api/orders/opened``: the calling user's orders that are not closed.

Both answer a JSON array, oldest first (at most :data:`LIMIT` orders per status).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter

from ordercast.api.deps import PrincipalDep, RuntimeDep
from ordercast.dialects.orderingstack import ios_order, kds_visible
from ordercast.domain.access import Access, UserPrincipal, can_follow_venue, tenant_access
from ordercast.domain.lifecycle import ORDER_TERMINAL, OrderStatus
from ordercast.domain.order import Order
from ordercast.errors import Forbidden, NotFound
from ordercast.runtime import Runtime
from ordercast.services.directory import plausible_id

router = APIRouter(prefix="/ordering-api/api/orders", tags=["ordering stack"])

LIMIT: Final = 500
_VENUE_STATUSES: Final = tuple(s.value for s in OrderStatus if kds_visible(s.value))
_OPEN_STATUSES: Final = tuple(s.value for s in OrderStatus if s not in ORDER_TERMINAL)


async def _orders(
    rt: Runtime,
    tenant_id: str,
    statuses: tuple[str, ...],
    *,
    location_id: str | None = None,
    user_id: str | None = None,
    location_ids: frozenset[str] | None = None,
) -> list[dict[str, Any]]:
    found: list[Order] = []
    for status in statuses:  # one indexed query per open status
        found += await rt.store.list_orders(
            tenant_id=tenant_id,
            location_ids=frozenset({location_id}) if location_id else location_ids,
            user_id=user_id,
            status=status,
            updated_since=None,
            limit=LIMIT,
        )
    found.sort(key=lambda o: (o.created_at, o.id))
    return [ios_order(o.to_dict()) for o in found]


@router.get("/venue/{venue}", response_model=None)
async def venue_orders(venue: str, principal: PrincipalDep, rt: RuntimeDep) -> list[dict[str, Any]]:
    """The venue's open orders (Ordering Stack ``IOrder``)."""
    location = await rt.store.get_location(venue) if plausible_id(venue) else None
    if location is None or tenant_access(principal, location.tenant_id) is not Access.ALLOWED:
        raise NotFound(f"venue {venue} not found")
    if not can_follow_venue(principal, location.tenant_id, location.id):
        raise Forbidden(f"venue {venue} is not granted to this app or login")
    return await _orders(rt, location.tenant_id, _VENUE_STATUSES, location_id=location.id)


@router.get("/opened", response_model=None)
async def opened_orders(principal: PrincipalDep, rt: RuntimeDep) -> list[dict[str, Any]]:
    """The calling user's orders that are not closed (Ordering Stack ``IOrder``)."""
    if not isinstance(principal, UserPrincipal):
        raise Forbidden("this is a user's list: call it with the user's access token")
    # Only at the locations the token may use (a customer token: its issuing app's grants).
    return await _orders(
        rt,
        principal.tenant_id,
        _OPEN_STATUSES,
        user_id=principal.user_id,
        location_ids=principal.location_ids,
    )
