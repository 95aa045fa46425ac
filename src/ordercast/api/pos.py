"""POS flow routes (RBI dialect): the POS's callbacks and order events, and fire requests.

The POS answers each webhook on its callback (``/v1/pos/orders/{id}/price|commit|fire``)
and pushes later statuses on ``/v1/pos/orders/{id}/events``, authenticated as a POS app
(HTTP Basic) granted the order's location. A repeated callback is a no-op answered 200;
a callback the order is not waiting for is a 409 ``wrong_phase`` naming the order's phase.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ordercast.api.commands import command_body
from ordercast.api.deps import PrincipalDep, RuntimeDep
from ordercast.api.schemas import Instant, iso_or_none
from ordercast.domain.pos_flow import Callback
from ordercast.runtime import Runtime
from ordercast.services.pos_flow import PosFlowService

router = APIRouter(prefix="/v1", tags=["pos flow"])


class PosError(BaseModel):
    """RBI POSOrderError: ``code`` is MENU, STORE, TIMEOUT or UNKNOWN."""

    model_config = ConfigDict(extra="ignore")
    code: str = Field(max_length=32)
    message: str = Field(default="", max_length=2000)


class _Callback(BaseModel):
    # POSes send more than we read (per-item prices, partner fields): ignore the rest.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    status: str = Field(max_length=32)
    errors: list[PosError] | None = None
    partner_errors: list[PosError] | None = Field(default=None, alias="partnerErrors")

    def all_errors(self) -> list[dict[str, Any]]:
        return [e.model_dump() for e in (self.errors or []) + (self.partner_errors or [])]


class PriceCallbackIn(_Callback):
    """``{status: PRICED, total}`` or ``{status: ERROR, errors: [{code, message}]}``."""

    total: int | None = Field(default=None, ge=0, description="the priced total, in cents")


class CommitCallbackIn(_Callback):
    """``{status: COMMITTED}`` or ``{status: ERROR, errors: [{code, message}]}``."""


class FireCallbackIn(_Callback):
    """``{status: PREPARING}`` or ``{status: ERROR, errors: [{code, message}]}``."""


class OrderEventIn(_Callback):
    """``{status: PREPARING|PREPARED|DONE|CANCELED|ERROR|COMMITTED|…, eventTime?}``."""

    event_time: Instant | None = Field(default=None, alias="eventTime")


def _pos(rt: Runtime) -> PosFlowService:
    assert rt.pos is not None, "the POS flow is not configured"
    return rt.pos


@router.post("/pos/orders/{order_id}/price")
async def price_callback(
    order_id: str, body: PriceCallbackIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Price webhook callback: PRICED moves the order to priced and sends the commit
    webhook (submitted); ERROR fails it."""
    result = await _pos(rt).callback(
        principal,
        order_id,
        Callback.PRICE,
        status=body.status,
        total=body.total,
        errors=body.all_errors(),
    )
    return command_body(rt, result)


@router.post("/pos/orders/{order_id}/commit")
async def commit_callback(
    order_id: str, body: CommitCallbackIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Commit webhook callback: COMMITTED accepts the order (then fires it, or holds it);
    ERROR rejects it (MENU, STORE) or fails it (TIMEOUT, UNKNOWN)."""
    result = await _pos(rt).callback(
        principal, order_id, Callback.COMMIT, status=body.status, errors=body.all_errors()
    )
    return command_body(rt, result)


@router.post("/pos/orders/{order_id}/fire")
async def fire_callback(
    order_id: str, body: FireCallbackIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Fire webhook callback: PREPARING moves the order to preparing; ERROR fails it."""
    result = await _pos(rt).callback(
        principal, order_id, Callback.FIRE, status=body.status, errors=body.all_errors()
    )
    return command_body(rt, result)


@router.post("/pos/orders/{order_id}/events")
async def order_event(
    order_id: str, body: OrderEventIn, principal: PrincipalDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Order event: PREPARED → ready, DONE → completed, CANCELED → cancelled, … Statuses
    that do not move the order forward are recorded and answered ``applied: false``."""
    result = await _pos(rt).order_event(
        principal,
        order_id,
        status=body.status,
        errors=body.all_errors(),
        occurred_at=iso_or_none(body.event_time),
    )
    return command_body(rt, result)


@router.post("/orders/{order_id}/fire", tags=["orders"])
async def fire(order_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """Send the fire webhook now, ahead of any ``fire_order_in_seconds``. An order is fired
    at most once: asking again answers ``applied: false``."""
    return command_body(rt, await _pos(rt).fire(principal, order_id))
