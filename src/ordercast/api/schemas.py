"""Wire DTOs of the REST API (pydantic), kept apart from the domain dataclasses."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ordercast.domain.isotime import iso


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantIn(In):
    name: str = Field(min_length=1, max_length=200)


class LocationIn(In):
    tenant_id: str
    name: str = Field(min_length=1, max_length=200)
    timezone: str = "UTC"
    settings: dict[str, Any] = Field(default_factory=dict)


class LocationPatch(In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = None
    settings: dict[str, Any] | None = None


class AppIn(In):
    tenant_id: str
    name: str = Field(min_length=1, max_length=200)
    kind: str
    location_ids: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)


class AppPatch(In):
    """Change an app: any field left out is kept. ``location_ids`` replaces the grants;
    ``settings`` is merged key by key (a ``null`` value removes that key)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    location_ids: list[str] | None = None
    settings: dict[str, Any] | None = None


class TokenIn(In):
    ttl: int | None = Field(default=None, ge=60, le=30 * 24 * 3600)


class Variant(In):
    pos_id: str | None = None
    name: str
    price: int = 0


class Option(In):
    pos_id: str | None = None
    name: str
    min: int | None = None
    max: int | None = None
    variants: list[Variant] = Field(default_factory=list)


class Surcount(In):
    pos_id: str | None = None
    reward_id: str | None = None
    name: str
    description: str | None = None
    type: Literal["absolute", "percentage"] = "absolute"
    amount: float
    value: int


class IncludedItem(In):
    name: str
    pos_id: str | None = None
    quantity: int = Field(default=1, ge=1)
    unit_price: int = Field(default=0, ge=0)
    options: list[Option] = Field(default_factory=list)


class Item(In):
    uuid: str | None = Field(default=None, max_length=64)
    pos_id: str | None = None
    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(ge=1, le=10_000)
    unit_price: int = Field(ge=0, description="cents")
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    menu_dir: list[str] = Field(default_factory=list)
    type: Literal["single", "bundle"] = "single"
    included_items: list[IncludedItem] = Field(default_factory=list)
    surcounts: list[Surcount] = Field(default_factory=list)
    options: list[Option] = Field(default_factory=list)


class Address(In):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = Field(default=None, min_length=2, max_length=2)
    notes: str | None = None


class Consumer(In):
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    address: Address | None = None
    notes: str | None = None


class OrderIn(In):
    location_id: str
    type: Literal["pickup", "delivery", "dine_in"] = "pickup"
    user_id: str | None = Field(default=None, max_length=128)
    items: list[Item] = Field(min_length=1, max_length=500)
    unapproved_items: list[Item] = Field(default_factory=list)
    surcounts: list[Surcount] = Field(default_factory=list)
    consumer: Consumer = Field(default_factory=Consumer)
    required_at: datetime | None = None
    available_eta: datetime | None = None
    external_order_ref: str | None = Field(default=None, max_length=128)
    pos_ref: str | None = Field(default=None, max_length=128)
    notes: str | None = Field(default=None, max_length=2000)
    fire_order_in_seconds: int | None = Field(default=None, ge=0, le=100_000)
    status: str | None = None

    def spec(self) -> dict[str, Any]:
        out = self.model_dump(exclude_none=True)
        for key in ("required_at", "available_eta"):
            value = getattr(self, key)
            if value is not None:
                out[key] = iso(value)  # a naive time is taken as UTC
        out["fire_order_in_seconds"] = self.fire_order_in_seconds
        return out


def iso_or_none(value: datetime | None) -> str | None:
    if value is None:
        return None
    return iso(value)  # a naive time is taken as UTC


class ErrorItem(In):
    code: str = Field(min_length=1, max_length=64)
    message: str = Field(default="", max_length=2000)


class TransitionIn(In):
    to: str
    reason: str | None = Field(default=None, max_length=2000)
    how: str | None = None
    errors: list[ErrorItem] | None = None
    occurred_at: datetime | None = None


class Adjustment(In):
    time: int | None = None
    order_date: str | None = None
    eta: str | None = None
    items: list[str] | None = None
    options: list[str] | None = None


class ConfirmationIn(In):
    confirmation: int
    reason: str | None = Field(default=None, max_length=2000)
    adjustment: Adjustment | None = None


class NotificationIn(In):
    type: str = Field(min_length=1, max_length=64)
    message: str = Field(min_length=1, max_length=2000)


class NoteIn(In):
    text: str = Field(min_length=1, max_length=2000)


class CancellationIn(In):
    reason: str | None = Field(default=None, max_length=2000)
    by: str | None = None
    request_only: bool = False


class DeliveryIn(In):
    provider: str | None = Field(default=None, max_length=64)


#: Largest proof of delivery accepted as a string (a base64 photo, as Uber Direct sends).
MAX_PROOF_CHARS = 1_000_000


class CourierStatusIn(In):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    status: str | None = None
    occurred_at: datetime | None = None
    # A string (seed 002's proofDelivery: e.g. a base64 PNG) or an object (a URL, a
    # signature, a photo, ...). ``proofDelivery`` is accepted as the seed spells it.
    proof: str | dict[str, Any] | None = Field(default=None, max_length=MAX_PROOF_CHARS)
    proof_delivery: str | None = Field(
        default=None, alias="proofDelivery", min_length=1, max_length=MAX_PROOF_CHARS
    )
    refund: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    eta: datetime | None = None
