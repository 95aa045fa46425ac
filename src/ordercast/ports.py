"""The small interfaces services depend on. Adapters in ``storage/`` and ``bus/`` implement them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ordercast.domain.accounts import Account
from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order
from ordercast.domain.pos_flow import TimerPlan

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> datetime: ...


class Ids(Protocol):
    """Where new ids, secrets and item uuids come from (``services.common.SystemIds``;
    tests inject counters instead of patching modules)."""

    def new_id(self, prefix: str = "") -> str: ...
    def new_secret(self, prefix: str, nbytes: int = 24) -> str: ...
    def uuid4(self) -> str: ...


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
# A deferred change's webhook messages, rendered from what ``Tx`` reads (the endpoints, the
# order's subscribers) and returned, not written (``OutboxHook.messages``).
ChangeRenderer = Callable[[Tx, Order, list[EventRecord]], Awaitable[Sequence["OutboxMessage"]]]
# What a change means for the POS flow's timers (``domain.pos_flow.plan_timers``, bound to
# the configured callback timeout).
TimerPlanner = Callable[[Order, list[EventRecord]], TimerPlan]
# A new unique id with a prefix (``services.common.new_id``).
IdFactory = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """A filtered, sorted page of a tenant's orders (the Doshii list). Times are ISO 8601
    UTC strings; ``statuses`` are canonical; ``sort_by`` is ``created_at`` or
    ``updated_at``."""

    location_ids: frozenset[str]
    statuses: frozenset[str] | None = None
    external_order_ref: str | None = None
    pos_ref: str | None = None
    created_from: str | None = None
    created_to: str | None = None
    updated_from: str | None = None
    updated_to: str | None = None
    sort_by: str = "created_at"
    descending: bool = True
    offset: int = 0
    limit: int = 50


class Accounts(Protocol):
    """Login accounts of the OAuth2 password grant (rules: ``domain.accounts``)."""

    async def create(self, account: Account) -> None: ...  # Conflict on a taken username
    async def get(self, account_id: str) -> Account | None: ...
    async def by_username(self, tenant_id: str, username: str) -> Account | None: ...
    async def list(self, tenant_id: str) -> list[Account]: ...
    async def update(self, account: Account) -> None: ...
    async def set_password_hash(self, account_id: str, password_hash: str) -> None: ...


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
    async def update_app(self, app: App) -> None: ...
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
    async def query_orders(self, tenant_id: str, query: OrderQuery) -> tuple[int, list[Order]]: ...
    async def list_events(self, order_id: str, after_seq: int, limit: int) -> list[EventRecord]: ...
    async def order_id_for_delivery(self, delivery_id: str) -> str | None: ...

    async def subscribe(self, order_id: str, app_id: str, implicit: bool, at: str) -> None: ...
    async def unsubscribe(self, order_id: str, app_id: str) -> bool: ...
    async def subscriber_ids(self, order_id: str) -> list[str]: ...

    # The store's other adapters, on the same database.
    def accounts(self) -> Accounts: ...
    def outbox(self) -> Outbox: ...
    def timers(
        self, planner: TimerPlanner, *, new_id: IdFactory, clock: Callable[[], float] = ...
    ) -> Timers: ...


@dataclass(frozen=True, slots=True)
class BusMessage:
    """A wake-up notice published after commit. ``kind`` is ``order`` or ``location``."""

    kind: str
    payload: dict[str, Any]


#: The kind of the notice a listener yields when it was marked lagged (not a real message).
LAGGED = "__lagged__"


class BusListener(Protocol):
    """A bounded queue of bus messages. ``lagged`` is set when it overflowed and dropped
    messages, or its bus lost its connection: the consumer must catch up from storage
    (``lagged_since``: unix seconds from when messages may have been missed)."""

    lagged: bool
    lagged_since: float | None

    def __aiter__(self) -> AsyncIterator[BusMessage]: ...
    async def close(self) -> None: ...


class Bus(Protocol):
    #: Why the bus cannot deliver right now (None when it can); ``/health`` reports it.
    down_reason: str | None

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
    """The POS flow's durable timers, written by :meth:`hook` (a ``TxHook``: register it
    with ``store.add_tx_hook``) in the order's own transaction."""

    async def hook(self, tx: Tx, order: Order, events: list[EventRecord]) -> None: ...
    async def pending(self, order_id: str) -> list[dict[str, Any]]: ...

    async def pos_flow_location(self, tenant_id: str, location_id: str) -> bool: ...
    async def claim_due(self, limit: int, lease_seconds: float) -> list[DueTimer]: ...
    async def finish(self, timer_id: str, outcome: str, error: str | None = None) -> None: ...
    async def release(self, timer_id: str, retry_at: float, error: str) -> None: ...
    async def next_due(self) -> float | None: ...
    async def count_pending(self) -> int: ...


# -- the webhook outbox ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointTarget:
    """A webhook endpoint messages may be written for (``kind``: its app's kind)."""

    id: str
    app_id: str
    dialect: str
    event_types: list[str] | None  # None: every event
    enabled: bool
    kind: str = ""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One wire message for one endpoint, as the outbox stores it. Build it with
    :meth:`new` (both producers do: the order hook and the Pusher server webhooks)."""

    id: str  # the Standard Webhooks ``webhook-id``, stable across retries and replays
    endpoint_id: str
    order_id: str | None  # None: not about an order (Pusher server webhooks)
    event_id: str | None
    part: int  # index among the event's wire messages
    seq: int | None
    event_type: str  # canonical
    wire_type: str  # the dialect's name for it
    body: str  # the exact JSON sent (UTF-8)
    status: str  # pending, or skipped when the endpoint is disabled
    last_error: str | None
    event_at: str  # the event's recorded_at (ISO)
    created_at: float  # unix seconds; also the first attempt's due time

    @classmethod
    def new(
        cls,
        *,
        id: str,
        endpoint: EndpointTarget,
        body: bytes,
        event_type: str,
        wire_type: str,
        event_at: str,
        now: float,
        part: int = 0,
        order_id: str | None = None,
        event_id: str | None = None,
        seq: int | None = None,
    ) -> OutboxMessage:
        """A message due ``now``; a disabled endpoint's is kept as ``skipped`` (nothing is
        dropped silently: replay can send it later)."""
        return cls(
            id=id,
            endpoint_id=endpoint.id,
            order_id=order_id,
            event_id=event_id,
            part=part,
            seq=seq,
            event_type=event_type,
            wire_type=wire_type,
            body=body.decode("utf-8"),
            status="pending" if endpoint.enabled else "skipped",
            last_error=None if endpoint.enabled else "endpoint disabled",
            event_at=event_at,
            created_at=now,
        )


class DeferredChanges(Protocol):
    """Order changes kept for a delivery worker to render (``ORDERCAST_OUTBOX_RENDER=
    worker``; the SQL outbox): ``defer`` in the order's transaction, ``expand`` in a worker."""

    async def defer(
        self, tx: Tx, order: Order, events: Sequence[EventRecord], now: float
    ) -> None: ...
    async def expand(self, render: ChangeRenderer, limit: int = ...) -> int: ...


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed message with what the worker needs to send it."""

    id: str
    endpoint_id: str
    order_id: str | None  # None: not about an order (Pusher server webhooks)
    event_id: str | None
    seq: int | None
    wire_type: str
    body: bytes
    attempts: int
    trigger: str
    url: str
    secret: str
    old_secrets: list[dict[str, Any]]
    failing_since: float | None
    max_concurrency: int
    dialect: str  # "pusher" adds X-Pusher-Key / X-Pusher-Signature (the app's key, secret)
    app_id: str
    # "doshii": the partner's authenticationKey / authenticationToken (Authorization header)
    auth_key: str | None = None
    auth_token: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt, ready to record."""

    message_id: str
    endpoint_id: str
    attempt_id: str
    attempt: int
    trigger: str
    url: str
    at: str
    webhook_timestamp: int
    status_code: int | None
    delivered: bool
    reason: str
    latency_ms: float
    response_body: str | None
    # What becomes of the message: pending (retry at next_attempt_at), delivered, failed.
    message_status: str
    next_attempt_at: float | None
    disable_endpoint: str | None  # reason, when the endpoint must be disabled
    now: float


class Outbox(Protocol):
    """Webhook endpoints, the outbox of messages and the attempts log.

    Claiming takes due ``pending`` messages (FIFO endpoints: only the oldest open message of
    each order) and marks them ``delivering`` under a lease; outcomes are fenced by the
    claiming worker's id. Endpoints and rows are plain dicts (the API's views read them).
    """

    #: Claimed messages a worker holds per endpoint, in multiples of max_concurrency.
    claim_depth: int

    # In an order's write transaction (the outbox hook).
    async def targets(self, tx: Tx, tenant_id: str, location_id: str) -> list[EndpointTarget]: ...
    async def subscribers(self, tx: Tx, order_id: str) -> set[str]: ...
    async def add(self, tx: Tx, messages: Sequence[OutboxMessage]) -> None: ...

    # Messages that belong to no order, in their own transaction.
    async def app_targets(self, app_ids: Sequence[str], dialect: str) -> list[EndpointTarget]: ...
    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None: ...

    # The delivery worker.
    async def claim(
        self,
        worker_id: str,
        *,
        now: float,
        lease_until: float,
        limit: int,
        in_flight: dict[str, int],
        saturated: Sequence[str] = (),
        depth: int = 1,
    ) -> list[Claimed]: ...
    async def renew(self, worker_id: str, lease_until: float) -> None: ...
    async def reap(self, now: float) -> int: ...
    async def release(self, worker_id: str, now: float) -> None: ...
    async def record(self, worker_id: str, outcomes: Sequence[Outcome]) -> None: ...
    async def app_credentials(self, app_id: str) -> tuple[str, str] | None: ...
    async def depth(self, now: float) -> tuple[dict[str, int], float | None]:
        """Open messages by status (``pending``, ``delivering``), and the oldest next-attempt
        time among pending messages of enabled endpoints when it is due by ``now``."""
        ...

    # Endpoint management, the attempts log and replay.
    async def create_endpoint(self, values: dict[str, Any]) -> None: ...
    async def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None: ...
    async def list_endpoints(self, app_id: str | None = None) -> list[dict[str, Any]]: ...
    async def update_endpoint(self, endpoint_id: str, values: dict[str, Any]) -> None: ...
    async def delete_endpoint(self, endpoint_id: str) -> None: ...
    async def list_attempts(
        self,
        endpoint_id: str,
        *,
        limit: int,
        before: int | None = None,
        message_id: str | None = None,
    ) -> list[dict[str, Any]]: ...
    async def list_messages(
        self,
        endpoint_id: str,
        *,
        status: str | None,
        order_id: str | None,
        limit: int,
        before: int | None = None,
    ) -> list[dict[str, Any]]: ...
    async def count_messages(self, endpoint_id: str) -> dict[str, int]: ...
    async def replay(
        self,
        endpoint_id: str,
        *,
        now: float,
        since: str | None,
        until: str | None,
        order_id: str | None,
        event_id: str | None,
        statuses: Iterable[str],
    ) -> int: ...
    async def open_count(self) -> int: ...
