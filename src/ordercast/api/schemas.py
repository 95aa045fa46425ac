"""Wire DTOs of the REST API (pydantic), kept apart from the domain dataclasses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ordercast.domain.isotime import EARLIEST, LATEST, iso


def _bounded(value: datetime) -> datetime:
    """An instant ordercast can store and render in any timezone: naive means UTC; it must
    lie between :data:`EARLIEST` and :data:`LATEST` once in UTC (9999-12-31T23:59:59-12:00
    is past year 9999 in UTC and used to be a 500)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        utc = aware.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValueError(
            f"must be between {EARLIEST.isoformat()} and {LATEST.isoformat()} (in UTC)"
        )
    return utc


#: A datetime field of the API: ISO 8601, bounded (a 422 naming the field otherwise).
Instant = Annotated[datetime, AfterValidator(_bounded)]

#: Free text limits (characters).
SHORT = 200  # names, labels, codes, ids given by clients
LONG = 2000  # notes, descriptions, messages


def text(limit: int = SHORT, **kwargs: Any) -> Any:
    return Field(max_length=limit, **kwargs)


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantIn(In):
    name: str = Field(min_length=1, max_length=200)


class LocationIn(In):
    tenant_id: str = text()
    name: str = Field(min_length=1, max_length=200)
    timezone: str = text(64, default="UTC")
    settings: dict[str, Any] = Field(default_factory=dict)


class LocationPatch(In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = text(64, default=None)
    settings: dict[str, Any] | None = None


class AppIn(In):
    tenant_id: str = text()
    name: str = Field(min_length=1, max_length=200)
    kind: str = text(32)
    location_ids: list[Annotated[str, text()]] = Field(default_factory=list, max_length=10_000)
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
    pos_id: str | None = text(default=None)
    name: str = text()
    price: int = 0


class Option(In):
    pos_id: str | None = text(default=None)
    name: str = text()
    min: int | None = None
    max: int | None = None
    variants: list[Variant] = Field(default_factory=list, max_length=500)


class Surcount(In):
    pos_id: str | None = text(default=None)
    reward_id: str | None = text(default=None)
    name: str = text()
    description: str | None = text(LONG, default=None)
    type: Literal["absolute", "percentage"] = "absolute"
    amount: float
    value: int


class IncludedItem(In):
    name: str = text()
    pos_id: str | None = text(default=None)
    quantity: int = Field(default=1, ge=1)
    unit_price: int = Field(default=0, ge=0)
    options: list[Option] = Field(default_factory=list)


class Item(In):
    uuid: str | None = Field(default=None, max_length=64)
    pos_id: str | None = text(default=None)
    name: str = Field(min_length=1, max_length=200)
    quantity: int = Field(ge=1, le=10_000)
    unit_price: int = Field(ge=0, description="cents")
    description: str | None = text(LONG, default=None)
    tags: list[Annotated[str, text()]] = Field(default_factory=list, max_length=100)
    menu_dir: list[Annotated[str, text()]] = Field(default_factory=list, max_length=100)
    type: Literal["single", "bundle"] = "single"
    included_items: list[IncludedItem] = Field(default_factory=list)
    surcounts: list[Surcount] = Field(default_factory=list)
    options: list[Option] = Field(default_factory=list)


class Address(In):
    line1: str | None = text(default=None)
    line2: str | None = text(default=None)
    city: str | None = text(default=None)
    state: str | None = text(default=None)
    postal_code: str | None = text(32, default=None)
    country: str | None = Field(default=None, min_length=2, max_length=2)
    notes: str | None = text(LONG, default=None)


class Consumer(In):
    name: str | None = text(default=None)
    phone: str | None = text(64, default=None)
    email: str | None = text(320, default=None)
    address: Address | None = None
    notes: str | None = text(LONG, default=None)


class OrderIn(In):
    location_id: str = text()
    type: Literal["pickup", "delivery", "dine_in"] = "pickup"
    user_id: str | None = Field(default=None, max_length=128)
    items: list[Item] = Field(min_length=1, max_length=500)
    unapproved_items: list[Item] = Field(default_factory=list, max_length=500)
    surcounts: list[Surcount] = Field(default_factory=list, max_length=100)
    consumer: Consumer = Field(default_factory=Consumer)
    required_at: Instant | None = None
    available_eta: Instant | None = None
    external_order_ref: str | None = Field(default=None, max_length=128)
    pos_ref: str | None = Field(default=None, max_length=128)
    notes: str | None = Field(default=None, max_length=2000)
    fire_order_in_seconds: int | None = Field(default=None, ge=0, le=100_000)
    status: str | None = text(32, default=None)

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
    to: str = text(32)
    reason: str | None = Field(default=None, max_length=2000)
    how: str | None = text(64, default=None)
    errors: list[ErrorItem] | None = Field(default=None, max_length=100)
    occurred_at: Instant | None = None


class Adjustment(In):
    time: int | None = None
    order_date: str | None = text(32, default=None)
    eta: str | None = text(32, default=None)
    items: list[Annotated[str, text()]] | None = Field(default=None, max_length=500)
    options: list[Annotated[str, text()]] | None = Field(default=None, max_length=500)


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
    by: str | None = text(32, default=None)
    request_only: bool = False


class DeliveryIn(In):
    provider: str | None = Field(default=None, max_length=64)


#: Largest proof of delivery accepted as a string (a base64 photo, as Uber Direct sends).
MAX_PROOF_CHARS = 1_000_000


class CourierStatusIn(In):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    status: str | None = text(64, default=None)
    occurred_at: Instant | None = None
    # A string (seed 002's proofDelivery: e.g. a base64 PNG) or an object (a URL, a
    # signature, a photo, ...). ``proofDelivery`` is accepted as the seed spells it.
    proof: str | dict[str, Any] | None = Field(default=None, max_length=MAX_PROOF_CHARS)
    proof_delivery: str | None = Field(
        default=None, alias="proofDelivery", min_length=1, max_length=MAX_PROOF_CHARS
    )
    refund: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    eta: Instant | None = None
