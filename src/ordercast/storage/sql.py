"""The SQL stores: :class:`SqliteStore` (default, WAL) and :class:`PostgresStore`.

Order writes are one transaction each: the order row, its new events and whatever the
registered transaction hooks add (the webhook outbox, POS timers). Per-order ``seq`` stays
gap-free under concurrent writers because the order row is locked (``FOR UPDATE`` on
PostgreSQL; on SQLite one writer thread per process, ``storage/writer.py``, whose
transactions begin IMMEDIATE), the update is guarded by the version read, and
``(order_id, seq)`` is unique: a writer that loses any race retries.

The order transaction (``_mutate_tx``, ``_create_tx``, the hooks) is one body of named
SQL run through the database's connector (``storage/connector.py``): on PostgreSQL on an
asyncpg connection, on SQLite on the writer thread (one thread hop per transaction, and
concurrent changes share a commit). The two stores differ only in their connector, their
statements (``storage/sql/``) and how they migrate; the less frequent reads and writes
(tenants, apps, endpoints, listings) go through SQLAlchemy Core on an async engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event as sa_event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order
from ordercast.errors import (
    ConfigError,
    Conflict,
    IntegrityViolation,
    NotFound,
    StorageBusy,
    StorageUnavailable,
)
from ordercast.fastjson import dumps_str
from ordercast.ports import (
    Accounts,
    App,
    IdFactory,
    Location,
    Mutation,
    OrderQuery,
    Outbox,
    Tenant,
    TimerPlanner,
    Timers,
    Tx,
    TxHook,
)
from ordercast.settings import Settings
from ordercast.storage import queries
from ordercast.storage import schema as s
from ordercast.storage.accounts import SqlAccounts
from ordercast.storage.connector import (
    Connector,
    PgConnector,
    SqliteConnector,
    connection_error,
)
from ordercast.storage.outbox import SqlOutbox
from ordercast.storage.timers import SqlTimers
from ordercast.storage.writer import SqliteWriter, sqlite_pragmas

T = TypeVar("T")

_MIGRATIONS = Path(__file__).parent / "migrations"
_MAX_RETRIES = 20

# How many orders a store keeps as last committed by default (see ``SqlStore._recent``):
# ``ORDERCAST_ORDER_CACHE_SIZE``'s default, defined once in settings. It must hold the
# orders that change during a rush: the cache is evicted oldest-first, so a working set
# larger than it misses on every change (at 200 locations with 19,000 open orders, the old
# 2,000 made reading back and parsing the document 4-5 % of the serving process:
# docs/benchmarks.md, session 12). An order with one item costs ~4.2 KB in it (1.35 KB of
# JSON document).
RECENT_ORDERS: int = Settings.model_fields["order_cache_size"].default
# How many delivery ids a store remembers the order of (see ``SqlStore._delivery_orders``).
DELIVERY_ORDERS = 10_000


def engine_url(url: str) -> str:
    """Map the user-facing URL to an async driver URL (fail fast on anything else)."""
    if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return url
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ConfigError(
        f"unsupported database URL '{url}': use sqlite:///path.db or postgresql://user@host/db"
    )


# IntegrityViolation.constraint as PostgreSQL names it, and as SQLite does (the columns).
_ORDER_EXISTS = frozenset({"orders_pkey", "orders.id"})
_SEQ_CLASH = frozenset({"uq_events_order_seq", "events.order_id, events.seq"})


def _refused(order_id: str, exc: IntegrityViolation) -> IntegrityViolation:
    """What really failed when a write of an order change broke a constraint that is
    neither "the order exists" nor "another writer took this seq" (e.g. a transaction
    hook's row): said once, not retried."""
    where = f"constraint {exc.constraint}" if exc.constraint else "an integrity constraint"
    return IntegrityViolation(
        f"order {order_id} was not saved: the database refused a row of the change ({where}: "
        f"{exc.detail}); nothing was written",
        constraint=exc.constraint,
    )


class _Retry(Exception):
    pass


def _connection_errors(engine: AsyncEngine) -> None:
    """The engine's connection failures raised as the connector's (``connection_error``),
    so the paths that still go through SQLAlchemy fail as the order writes do: a refused or
    lost connection is :class:`StorageUnavailable` (and the pool drops its connections), a
    SQLite file locked past ``busy_timeout`` :class:`StorageBusy`. Other errors stay
    SQLAlchemy's (``IntegrityError`` is caught by name here and in ``storage/accounts.py``).
    """

    def handle_error(context: ExceptionContext) -> BaseException | None:
        mapped = connection_error(context.original_exception)
        if isinstance(mapped, StorageUnavailable):
            context.is_disconnect = True
        return mapped

    def do_connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        # A refused or timed-out connect is no DBAPI error, so handle_error never sees it.
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as exc:
            raise StorageUnavailable(f"database connection failed: {exc}") from exc

    sa_event.listen(engine.sync_engine, "handle_error", handle_error)
    sa_event.listen(engine.sync_engine, "do_connect", do_connect)


def open_store(url: str, pool_size: int = 10, order_cache: int = RECENT_ORDERS) -> SqlStore:
    """``sqlite:///path.db`` (default) or ``postgresql://…``; anything else fails fast.
    ``pool_size``: PostgreSQL connections of the hot path (see :class:`PostgresStore`);
    ``order_cache``: how many last committed orders it keeps (``SqlStore._recent``)."""
    engine = engine_url(url)
    store: SqlStore = (
        SqliteStore(url) if engine.startswith("sqlite") else PostgresStore(url, pool_size)
    )
    store.order_cache = order_cache
    return store


class SqlStore:
    """What both SQL stores share; build one with :func:`open_store`."""

    #: Claimed webhook messages a delivery worker holds per endpoint, in multiples of its
    #: max_concurrency, unless configured (see ``delivery.worker.WorkerConfig.depth``).
    claim_depth = 1

    def __init__(self, url: str, engine: AsyncEngine, connector: Connector) -> None:
        self.url = engine_url(url)
        self.engine = engine
        self.connector = connector
        _connection_errors(engine)
        self._hooks: list[TxHook] = []
        # The last orders this process committed, as committed: an order change reads only
        # the row's version when it matches (no doc to parse). Safe across processes: a
        # version is committed once per order (the guarded update), so (id, version) names
        # one document; entries are added after the COMMIT only, on the event loop (the
        # writer thread only reads), and Orders are never changed in place (``evolve``).
        self._recent: dict[str, Order] = {}
        self.order_cache = RECENT_ORDERS  # how many it keeps (0: none)
        # The order of each delivery this process created or looked up: a delivery never
        # moves (its ``deliveries`` row is inserted once, never updated or deleted), so the
        # mapping never goes stale, on any node. A courier update resolves its delivery
        # before its write transaction; through the engine that read cost more CPU than
        # the transaction's own statements (docs/benchmarks.md, 2026-12-03 rush writes).
        self._delivery_orders: dict[str, str] = {}

    def _write_lock(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around the engine's write transactions (SQLite: one writer at a time)."""
        return contextlib.nullcontext()

    async def _migrate(self, conn: AsyncConnection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))

        def upgrade(sync_conn: sa.Connection) -> None:
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        await conn.run_sync(upgrade)

    # -- lifecycle -----------------------------------------------------------------

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await self._migrate(conn)

    async def close(self) -> None:
        await self.connector.close()
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    def add_tx_hook(self, hook: TxHook) -> None:
        self._hooks.append(hook)

    def accounts(self) -> Accounts:
        return SqlAccounts(self.engine, self.write)

    def outbox(self) -> Outbox:
        return SqlOutbox(self.engine, self.write, self.connector, self.claim_depth)

    def timers(
        self,
        planner: TimerPlanner,
        *,
        new_id: IdFactory,
        clock: Callable[[], float] = time.time,
    ) -> Timers:
        return SqlTimers(self.connector, planner, new_id=new_id, clock=clock)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction on the engine (serialised on SQLite)."""
        async with self._write_lock(), self.engine.begin() as conn:
            yield conn

    # -- meta ----------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self.engine.connect() as conn:
            row = await conn.execute(sa.select(s.meta.c.value).where(s.meta.c.key == key))
            return row.scalar_one_or_none()

    async def insert_meta(self, key: str, value: str) -> bool:
        """Insert unless present; True when this call inserted it."""
        try:
            async with self.write() as conn:
                await conn.execute(s.meta.insert().values(key=key, value=value))
        except IntegrityError:
            return False
        return True

    async def put_meta(self, key: str, value: str) -> None:
        async with self.write() as conn:
            await conn.execute(s.meta.delete().where(s.meta.c.key == key))
            await conn.execute(s.meta.insert().values(key=key, value=value))

    # -- tenants, locations, apps --------------------------------------------------

    async def create_tenant(self, tenant: Tenant) -> None:
        async with self.write() as conn:
            await conn.execute(
                s.tenants.insert().values(
                    id=tenant.id, name=tenant.name, created_at=tenant.created_at
                )
            )

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(s.tenants).where(s.tenants.c.id == tenant_id))
            ).first()
        return Tenant(row.id, row.name, row.created_at) if row else None

    async def create_location(self, location: Location) -> None:
        async with self.write() as conn:
            await conn.execute(s.locations.insert().values(**location.to_dict()))

    async def update_location(self, location: Location) -> None:
        async with self.write() as conn:
            await conn.execute(
                s.locations.update()
                .where(s.locations.c.id == location.id)
                .values(**location.to_dict())
            )

    async def get_location(self, location_id: str) -> Location | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(s.locations).where(s.locations.c.id == location_id))
            ).first()
        if row is None:
            return None
        return Location(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            timezone=row.timezone,
            settings=dict(row.settings),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def create_app(self, app: App) -> None:
        async with self.write() as conn:
            await conn.execute(
                s.apps.insert().values(
                    id=app.id,
                    tenant_id=app.tenant_id,
                    name=app.name,
                    kind=app.kind,
                    key=app.key,
                    secret=app.secret,
                    settings=app.settings,
                    created_at=app.created_at,
                )
            )
            if app.location_ids:
                await conn.execute(
                    s.app_locations.insert(),
                    [{"app_id": app.id, "location_id": lid} for lid in sorted(app.location_ids)],
                )

    async def update_app(self, app: App) -> None:
        """Name, settings and granted locations (the key, secret and kind never change)."""
        async with self.write() as conn:
            await conn.execute(
                s.apps.update()
                .where(s.apps.c.id == app.id)
                .values(name=app.name, settings=app.settings)
            )
            await conn.execute(s.app_locations.delete().where(s.app_locations.c.app_id == app.id))
            if app.location_ids:
                await conn.execute(
                    s.app_locations.insert(),
                    [{"app_id": app.id, "location_id": lid} for lid in sorted(app.location_ids)],
                )

    async def get_app(self, app_id: str) -> App | None:
        return await self._load_app(s.apps.c.id == app_id)

    async def get_app_by_key(self, key: str) -> App | None:
        return await self._load_app(s.apps.c.key == key)

    async def _load_app(self, where: sa.ColumnElement[bool]) -> App | None:
        # One round trip: the app joined with its granted locations (one row per location).
        query = (
            sa.select(s.apps, s.app_locations.c.location_id)
            .select_from(s.apps.outerjoin(s.app_locations, s.app_locations.c.app_id == s.apps.c.id))
            .where(where)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        row = rows[0]
        return App(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            kind=row.kind,
            key=row.key,
            secret=row.secret,
            settings=dict(row.settings),
            created_at=row.created_at,
            location_ids=frozenset(r.location_id for r in rows if r.location_id is not None),
        )

    # -- orders and events ---------------------------------------------------------

    def _committed(self, mutation: Mutation) -> None:
        order = mutation.order
        recent = self._recent
        recent.pop(order.id, None)
        recent[order.id] = order
        while len(recent) > self.order_cache:
            del recent[next(iter(recent))]
        if mutation.new_delivery_id:
            self._remember_delivery(mutation.new_delivery_id, order.id)

    def _remember_delivery(self, delivery_id: str, order_id: str) -> None:
        known = self._delivery_orders
        known[delivery_id] = order_id
        if len(known) > DELIVERY_ORDERS:
            del known[next(iter(known))]

    async def create_order(self, mutation: Mutation) -> None:
        async def body(tx: Tx) -> None:
            await self._create_tx(tx, mutation)

        busy: StorageBusy | None = None
        for _ in range(_MAX_RETRIES):
            try:
                await self.connector.transaction(body)
                self._committed(mutation)
                return
            except IntegrityViolation as exc:
                if exc.constraint in _ORDER_EXISTS:
                    raise Conflict(f"order {mutation.order.id} already exists") from exc
                raise _refused(mutation.order.id, exc) from exc
            except StorageBusy as exc:
                busy = exc
                await asyncio.sleep(0.01)
        raise StorageBusy("the database stayed locked by another process") from busy

    async def mutate_order(
        self, order_id: str, change: Callable[[Order], Mutation | None]
    ) -> Mutation | None:
        async def body(tx: Tx) -> Mutation | None:
            return await self._mutate_tx(tx, order_id, change)

        busy: StorageBusy | None = None
        for _ in range(_MAX_RETRIES):
            try:
                done = await self.connector.transaction(body)
                if done is not None and done.events:
                    self._committed(done)
                return done
            except _Retry:
                busy = None
                await asyncio.sleep(0)
            except IntegrityViolation as exc:
                # Only a clash on an event's (order, seq) means another writer got there
                # first; anything else (a transaction hook's row) would fail again.
                if exc.constraint not in _SEQ_CLASH:
                    raise _refused(order_id, exc) from exc
                busy = None
                await asyncio.sleep(0)
            except StorageBusy as exc:
                busy = exc
                await asyncio.sleep(0.01)
        if busy is not None:  # the last tries found the file locked by another process
            raise StorageBusy("the database stayed locked by another process") from busy
        raise Conflict(f"order {order_id} is being changed by too many writers; try again")

    # The transaction bodies (see the module docstring for where they run).

    async def _create_tx(self, tx: Tx, mutation: Mutation) -> None:
        await tx.execute("insert_order", _order_row(mutation.order))
        await self._append(tx, mutation)

    async def _mutate_tx(
        self, tx: Tx, order_id: str, change: Callable[[Order], Mutation | None]
    ) -> Mutation | None:
        key = {"id": order_id}
        before = self._recent.get(order_id)
        if before is not None:
            row = await tx.fetch_one("order_version_for_update", key)
            if row is None or row[0] != before.version:
                before = None  # changed since (or gone): read it
        if before is None:
            row = await tx.fetch_one("order_doc_for_update", key)
            if row is None:
                raise NotFound(f"order {order_id} not found")
            before = Order.from_dict(json.loads(row[0]))
        mutation = change(before)  # pure; raises to refuse, rolling back
        if mutation is None or not mutation.events:
            return mutation
        if mutation.order.id != order_id:
            raise ValueError(f"a change of order {order_id} returned order {mutation.order.id}")
        after = mutation.order
        row_values = _order_row(after)
        row_values["read_version"] = before.version
        same_keys = (
            after.tenant_id == before.tenant_id
            and after.location_id == before.location_id
            and after.user_id == before.user_id
            and after.created_at == before.created_at
        )
        update = "update_order" if same_keys else "update_order_keys"
        if await tx.execute(update, row_values) != 1:
            raise _Retry()
        await self._append(tx, mutation)
        return mutation

    async def _append(self, tx: Tx, mutation: Mutation) -> None:
        order = mutation.order
        await tx.execute_many(
            "insert_event",
            [
                {
                    "event_id": rec.event_id,
                    "order_id": rec.order_id,
                    "seq": rec.seq,
                    "type": rec.type,
                    "status": rec.status,
                    "tenant_id": order.tenant_id,
                    "location_id": order.location_id,
                    "occurred_at": rec.occurred_at,
                    "recorded_at": rec.recorded_at,
                    "actor": dumps_str(rec.actor),
                    "data": dumps_str(rec.data),
                }
                for rec in mutation.events
            ],
        )
        if mutation.new_delivery_id:
            await tx.execute(
                "insert_delivery", {"id": mutation.new_delivery_id, "order_id": order.id}
            )
        if mutation.subscribe_app_id:
            await tx.execute(
                "subscribe",
                {
                    "order_id": order.id,
                    "app_id": mutation.subscribe_app_id,
                    "implicit": True,
                    "created_at": order.updated_at,
                },
            )
        for hook in self._hooks:
            await hook(tx, order, mutation.events)

    async def get_order(self, order_id: str) -> Order | None:
        async with self.engine.connect() as conn:
            doc = (
                await conn.execute(sa.select(s.orders.c.doc).where(s.orders.c.id == order_id))
            ).scalar_one_or_none()
        return Order.from_dict(doc) if doc is not None else None

    async def list_orders(
        self,
        *,
        tenant_id: str,
        location_ids: frozenset[str] | None,
        user_id: str | None,
        status: str | None,
        updated_since: str | None,
        limit: int,
    ) -> list[Order]:
        q = sa.select(s.orders.c.doc).where(s.orders.c.tenant_id == tenant_id)
        if location_ids is not None:
            q = q.where(s.orders.c.location_id.in_(sorted(location_ids)))
        if user_id is not None:
            q = q.where(s.orders.c.user_id == user_id)
        if status is not None:
            q = q.where(s.orders.c.status == status)
        if updated_since is not None:
            q = q.where(s.orders.c.updated_at >= updated_since)
        q = q.order_by(s.orders.c.updated_at.desc(), s.orders.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [Order.from_dict(doc) for doc in (await conn.execute(q)).scalars()]

    async def query_orders(self, tenant_id: str, query: OrderQuery) -> tuple[int, list[Order]]:
        o = s.orders.c
        where = [o.tenant_id == tenant_id, o.location_id.in_(sorted(query.location_ids))]
        if query.statuses is not None:
            where.append(o.status.in_(sorted(query.statuses)))
        if query.external_order_ref is not None:
            where.append(o.external_order_ref == query.external_order_ref)
        for column, low, high in (
            (o.created_at, query.created_from, query.created_to),
            (o.updated_at, query.updated_from, query.updated_to),
        ):
            if low is not None:
                where.append(column >= low)
            if high is not None:
                where.append(column <= high)
        column = o.updated_at if query.sort_by == "updated_at" else o.created_at
        order_by = (column.desc(), o.id.desc()) if query.descending else (column, o.id)
        page = sa.select(o.doc).where(*where).order_by(*order_by)
        count = sa.select(sa.func.count()).select_from(s.orders).where(*where)
        async with self.engine.connect() as conn:
            if query.pos_ref is not None:
                # pos_ref lives in the document only: filtered here, then paged.
                docs = [
                    d
                    for d in (await conn.execute(page)).scalars()
                    if d.get("pos_ref") == query.pos_ref
                ]
                end = query.offset + query.limit
                return len(docs), [Order.from_dict(d) for d in docs[query.offset : end]]
            total = int((await conn.execute(count)).scalar_one())
            rows = (await conn.execute(page.offset(query.offset).limit(query.limit))).scalars()
            return total, [Order.from_dict(doc) for doc in rows]

    async def list_events(self, order_id: str, after_seq: int, limit: int) -> list[EventRecord]:
        q = (
            sa.select(s.events)
            .where(s.events.c.order_id == order_id, s.events.c.seq > after_seq)
            .order_by(s.events.c.seq)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [EventRecord.from_dict(dict(r)) for r in rows]

    async def order_id_for_delivery(self, delivery_id: str) -> str | None:
        known = self._delivery_orders.get(delivery_id)
        if known is not None:
            return known
        async with self.engine.connect() as conn:
            order_id: str | None = (
                await conn.execute(
                    sa.select(s.deliveries.c.order_id).where(s.deliveries.c.id == delivery_id)
                )
            ).scalar_one_or_none()
        if order_id is not None:
            self._remember_delivery(delivery_id, order_id)
        return order_id

    # -- Doshii-style subscriptions -----------------------------------------------

    async def subscribe(self, order_id: str, app_id: str, implicit: bool, at: str) -> None:
        # One statement: insert unless this app already follows the order.
        await self.connector.execute(
            "subscribe",
            {"order_id": order_id, "app_id": app_id, "implicit": implicit, "created_at": at},
        )

    async def unsubscribe(self, order_id: str, app_id: str) -> bool:
        async with self.write() as conn:
            result = await conn.execute(
                s.subscriptions.delete().where(
                    s.subscriptions.c.order_id == order_id, s.subscriptions.c.app_id == app_id
                )
            )
            return bool(result.rowcount)

    async def subscriber_ids(self, order_id: str) -> list[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(s.subscriptions.c.app_id)
                .where(s.subscriptions.c.order_id == order_id)
                .order_by(s.subscriptions.c.app_id)
            )
            return list(rows.scalars())


def _order_row(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "tenant_id": order.tenant_id,
        "location_id": order.location_id,
        "status": order.status,
        "version": order.version,
        "user_id": order.user_id,
        "external_order_ref": order.external_order_ref,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "doc": dumps_str(order.as_dict()),  # serialized at once: no need for a deep copy
    }


class SqliteStore(SqlStore):
    """A SQLite file (WAL). ``sqlite:///:memory:`` is a temporary file removed on close:
    the writer thread and the engine are separate connections and must see one database."""

    def __init__(self, url: str) -> None:
        async_url = engine_url(url)
        path = async_url.split("///", 1)[-1]
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if not path or path == ":memory:":
            self._tmp = tempfile.TemporaryDirectory(prefix="ordercast-")
            path = str(Path(self._tmp.name) / "ordercast.db")
            async_url = "sqlite+aiosqlite:///" + path
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(async_url)
        sa_event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        # SQLite allows one writer: writes are serialised in-process (the writer thread
        # takes this lock around each transaction) instead of hitting SQLITE_BUSY.
        self._lock = asyncio.Lock()
        connector = SqliteConnector(SqliteWriter(path, self._lock), queries.load("sqlite"))
        super().__init__(async_url, engine, connector)

    def _write_lock(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._lock

    async def close(self) -> None:
        await super().close()
        if self._tmp is not None:
            self._tmp.cleanup()


class PostgresStore(SqlStore):
    """PostgreSQL: the engine and an asyncpg pool (order writes, claims, timers)."""

    claim_depth = 2

    def __init__(self, url: str, pool_size: int = 10) -> None:
        # At most pool_size connections for the hot path (asyncpg) and a quarter of that,
        # again as much in bursts, for the less frequent SQLAlchemy paths: 1.5 x pool_size
        # per node in all. PostgreSQL's default max_connections is 100, so three nodes at
        # the default leave room for everything else (it was 50 per node: a third node failed
        # with "too many clients already").
        async_url = engine_url(url)
        side = max(1, pool_size // 4)
        engine = create_async_engine(async_url, pool_size=side, max_overflow=side)
        dsn = "postgresql://" + async_url.split("://", 1)[1]
        connector = PgConnector(dsn, queries.load("postgresql"), max_size=pool_size)
        super().__init__(async_url, engine, connector)

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            # Two processes starting at once must not both migrate.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7262730001)"))
            await self._migrate(conn)
