"""The small interfaces services depend on. Adapters in ``storage/`` and ``bus/`` implement them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Location:
    id: str
    tenant_id: str
    name: str
    timezone: str
    settings: dict[str, Any]
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        """Every field: the API resource, the bus payload and the storage row alike."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class App:
    id: str
    tenant_id: str
    name: str
    kind: str
    key: str
    secret: str
    settings: dict[str, Any]
    created_at: str
    location_ids: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Mutation:
    """What a command did to an order: the order after, and the events to append."""

    order: Order
    events: list[EventRecord]
    subscribe_app_id: str | None = None  # Doshii: the acting app is subscribed implicitly
    new_delivery_id: str | None = None


Params = Mapping[str, Any]


class Row(Protocol):
    """A result row: by column name or position (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: str | int, /) -> Any: ...
    def keys(self) -> Iterable[str]: ...


class Tx(Protocol):
    """One open database transaction, running named SQL (``storage/sql/*.sql``).

    The methods are coroutines so one body serves both databases: on PostgreSQL they await
    the driver; on a SQLite file the whole body runs on the store's writer thread and never
    suspends (``storage/connector.py``). So a body awaits nothing but its ``Tx``, touches
    no asyncio object, and stays short: a SQLite body holds the database's write lock.
    Driver errors arrive as ``ordercast.errors.StorageError``.
    """

    async def execute(self, query: str, params: Params = ..., /) -> int: ...
    async def execute_many(self, query: str, rows: Sequence[Params], /) -> None: ...
    async def fetch_all(self, query: str, params: Params = ..., /) -> list[Row]: ...
    async def fetch_one(self, query: str, params: Params = ..., /) -> Row | None: ...


# A hook run inside the order-write transaction (the webhook outbox and the POS timers plug
# in here): the transaction, the order after the change and the new events. It may only do
# I/O through the ``Tx`` (see there for what else it must not do).
TxHook = Callable[[Tx, Order, list[EventRecord]], Awaitable[None]]


class Store(Protocol):
    async def migrate(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    def add_tx_hook(self, hook: TxHook) -> None: ...

    async def get_meta(self, key: str) -> str | None: ...
    async def insert_meta(self, key: str, value: str) -> bool: ...
    async def put_meta(self, key: str, value: str) -> None: ...

    async def create_tenant(self, tenant: Tenant) -> None: ...
    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...
    async def create_location(self, location: Location) -> None: ...
    async def get_location(self, location_id: str) -> Location | None: ...
    async def update_location(self, location: Location) -> None: ...
    async def create_app(self, app: App) -> None: ...
    async def get_app(self, app_id: str) -> App | None: ...
    async def get_app_by_key(self, key: str) -> App | None: ...

    async def create_order(self, mutation: Mutation) -> None: ...
    async def mutate_order(
        self, order_id: str, change: Callable[[Order], Mutation | None]
    ) -> Mutation | None: ...
    async def get_order(self, order_id: str) -> Order | None: ...
    async def list_orders(
        self,
        *,
        tenant_id: str,
        location_ids: frozenset[str] | None,
        user_id: str | None,
        status: str | None,
        updated_since: str | None,
        limit: int,
    ) -> list[Order]: ...
    async def list_events(self, order_id: str, after_seq: int, limit: int) -> list[EventRecord]: ...
    async def order_id_for_delivery(self, delivery_id: str) -> str | None: ...

    async def subscribe(self, order_id: str, app_id: str, implicit: bool, at: str) -> None: ...
    async def unsubscribe(self, order_id: str, app_id: str) -> bool: ...
    async def subscriber_ids(self, order_id: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class BusMessage:
    """A wake-up notice published after commit. ``kind`` is ``order`` or ``location``."""

    kind: str
    payload: dict[str, Any]


class BusListener(Protocol):
    """A bounded queue of bus messages. ``lagged`` is set when it overflowed and dropped
    messages: the consumer must catch up from storage."""

    lagged: bool

    def __aiter__(self) -> AsyncIterator[BusMessage]: ...
    async def close(self) -> None: ...


class Bus(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def publish(self, message: BusMessage) -> None: ...
    def listen(self, maxsize: int = 10_000) -> BusListener: ...


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A POS-flow timer claimed by a runner (``kind``: see ``domain.pos_flow.TimerKind``)."""

    id: str
    order_id: str
    kind: str
    due_at: float  # unix seconds
    attempt: int


class Timers(Protocol):
    """The POS flow's durable timers (written by a store transaction hook)."""

    async def pos_flow_location(self, tenant_id: str, location_id: str) -> bool: ...
    async def claim_due(self, limit: int, lease_seconds: float) -> list[DueTimer]: ...
    async def finish(self, timer_id: str, outcome: str, error: str | None = None) -> None: ...
    async def release(self, timer_id: str, retry_at: float, error: str) -> None: ...
    async def next_due(self) -> float | None: ...
