"""The SQL store: SQLite (default, WAL) and PostgreSQL (asyncpg), one implementation.

Order writes are one transaction each: the order row, its new events and whatever the
registered transaction hooks add (the webhook outbox, POS timers). Per-order ``seq`` stays
gap-free under concurrent writers because the order row is locked (``FOR UPDATE`` on
PostgreSQL; on SQLite one writer thread per process, ``storage/writer.py``, whose
transactions begin IMMEDIATE), the update is guarded by the version read, and
``(order_id, seq)`` is unique: a writer that loses any race retries.

The body of an order transaction is one synchronous function on a plain SQLAlchemy
``Connection`` (``_mutate_tx``, ``_create_tx``, the hooks): on PostgreSQL it runs through
``AsyncConnection.run_sync`` (one greenlet for the transaction instead of one per
statement), on a SQLite file on the writer thread (one thread hop per transaction, and
concurrent changes share a commit).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order
from ordercast.errors import ConfigError, Conflict, NotFound
from ordercast.ports import App, Location, Mutation, Tenant, TxHook
from ordercast.storage import fastsql
from ordercast.storage import schema as s
from ordercast.storage.writer import SqliteWriter, sqlite_pragmas

T = TypeVar("T")

_MIGRATIONS = Path(__file__).parent / "migrations"
_MAX_RETRIES = 20

# The guarded order update: SET every column of ``_order_row`` but ``id`` (given as
# parameters: SQLAlchemy SETs each column named in them) where the row still has the
# version that was read. ``id`` must not be in the SET list: on SQLite, assigning the
# parent key, even its own value, makes the foreign keys to it be checked in the child
# tables (events, deliveries, subscriptions, timers): 85 µs per update at 1,000 events on
# the order, growing with them, against 7 µs without.
_UPDATE_ORDER = s.orders.update().where(
    s.orders.c.id == sa.bindparam("b_id"), s.orders.c.version == sa.bindparam("b_version")
)
# ``inline()``: no RETURNING of generated keys (nobody reads them; see storage/fastsql.py).
_INSERT_ORDER = s.orders.insert().inline()
_INSERT_EVENTS = s.events.insert().inline()
_INSERT_DELIVERY = s.deliveries.insert().inline()
_SELECT_DOC = sa.select(s.orders.c.doc).where(s.orders.c.id == sa.bindparam("b_id"))
_SELECT_DOC_FOR_UPDATE = _SELECT_DOC.with_for_update()
_SELECT_VERSION = sa.select(s.orders.c.version).where(s.orders.c.id == sa.bindparam("b_id"))
_SELECT_VERSION_FOR_UPDATE = _SELECT_VERSION.with_for_update()
# How many orders ``SqlStore`` keeps as last committed (see ``SqlStore._recent``).
RECENT_ORDERS = 2_000
# The implicit subscription: one statement, insert unless this app already follows the order.
_INSERT_SUBSCRIPTION_SQLITE = (
    sqlite_insert(s.subscriptions)
    .on_conflict_do_nothing(index_elements=[s.subscriptions.c.order_id, s.subscriptions.c.app_id])
    .inline()
)
_INSERT_SUBSCRIPTION_PG = (
    pg_insert(s.subscriptions)
    .on_conflict_do_nothing(index_elements=[s.subscriptions.c.order_id, s.subscriptions.c.app_id])
    .inline()
)


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


class _Retry(Exception):
    pass


class SqlStore:
    def __init__(self, url: str) -> None:
        self.url = engine_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(self.url)
            sa_event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
        else:
            path = ""
            self.engine = create_async_engine(self.url, pool_size=10, max_overflow=20)
        # SQLite allows one writer: serialise writes in-process instead of hitting SQLITE_BUSY.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        # Order writes on a SQLite file: the dedicated writer thread (an in-memory database
        # is private to its one connection, so it keeps the asyncio engine).
        self._writer: SqliteWriter | None = None
        if self._write_lock is not None and path and path != ":memory:":
            sync_url = sa.make_url(self.url).set(drivername="sqlite")
            self._writer = SqliteWriter(sync_url, self._write_lock)
        self._hooks: list[TxHook] = []
        # Hot-path statements, built once per module (compiled forms are cached by identity).
        self._insert_subscription = (
            _INSERT_SUBSCRIPTION_SQLITE if self.is_sqlite else _INSERT_SUBSCRIPTION_PG
        )
        self._select_doc_for_update = _SELECT_DOC if self.is_sqlite else _SELECT_DOC_FOR_UPDATE
        self._select_version_for_update = (
            _SELECT_VERSION if self.is_sqlite else _SELECT_VERSION_FOR_UPDATE
        )
        # The last orders this process committed, as committed: an order change reads only
        # the row's version when it matches (no doc to parse). Safe across processes: a
        # version is committed once per order (the guarded update), so (id, version) names
        # one document; entries are added after the COMMIT only, on the event loop (the
        # writer thread only reads), and Orders are never changed in place (``evolve``).
        self._recent: dict[str, Order] = {}

    # -- lifecycle -----------------------------------------------------------------

    async def migrate(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))

        def upgrade(sync_conn: sa.Connection) -> None:
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                # Two processes starting at once must not both migrate.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7262730001)"))
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    def add_tx_hook(self, hook: TxHook) -> None:
        self._hooks.append(hook)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction (serialised on SQLite)."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self.engine.begin() as conn:
            yield conn

    async def _transaction(self, body: Callable[[sa.Connection], T]) -> T:
        """Run ``body(connection)`` in one write transaction, committed when this returns."""
        if self._writer is not None:
            return await self._writer.run(body)
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self.engine.connect() as conn:
            return await conn.run_sync(_in_transaction, body)

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

    def _committed(self, order: Order) -> None:
        recent = self._recent
        recent.pop(order.id, None)
        recent[order.id] = order
        if len(recent) > RECENT_ORDERS:
            del recent[next(iter(recent))]

    async def create_order(self, mutation: Mutation) -> None:
        for _ in range(_MAX_RETRIES):
            try:
                await self._transaction(lambda conn: self._create_tx(conn, mutation))
                self._committed(mutation.order)
                return
            except IntegrityError as exc:
                raise Conflict(f"order {mutation.order.id} already exists") from exc
            except OperationalError as exc:
                if not _locked(exc):
                    raise
                await asyncio.sleep(0.01)
        raise Conflict("the database is locked by another process; try again")

    async def mutate_order(
        self, order_id: str, change: Callable[[Order], Mutation | None]
    ) -> Mutation | None:
        for _ in range(_MAX_RETRIES):
            try:
                done = await self._transaction(lambda conn: self._mutate_tx(conn, order_id, change))
                if done is not None and done.events:
                    self._committed(done.order)
                return done
            except (_Retry, IntegrityError):
                await asyncio.sleep(0)
            except OperationalError as exc:
                if not _locked(exc):
                    raise
                await asyncio.sleep(0.01)
        raise Conflict(f"order {order_id} is being changed by too many writers; try again")

    # The transaction bodies: synchronous, on the transaction's connection (see the module
    # docstring for where they run). Statements go through ``fastsql``: one driver call each
    # once the transaction is open (on PostgreSQL the first goes through SQLAlchemy, which
    # opens it).

    def _create_tx(self, conn: sa.Connection, mutation: Mutation) -> None:
        fastsql.execute(conn, _INSERT_ORDER, _order_row(mutation.order))
        self._append(conn, mutation)

    def _mutate_tx(
        self, conn: sa.Connection, order_id: str, change: Callable[[Order], Mutation | None]
    ) -> Mutation | None:
        key = {"b_id": order_id}
        before = self._recent.get(order_id)
        if before is not None:
            version = fastsql.execute(conn, self._select_version_for_update, key)
            if version.scalar_one_or_none() != before.version:
                before = None  # changed since (or gone): read it
        if before is None:
            doc = fastsql.execute(conn, self._select_doc_for_update, key).scalar_one_or_none()
            if doc is None:
                raise NotFound(f"order {order_id} not found")
            before = Order.from_dict(doc)
        mutation = change(before)  # pure; raises to refuse, rolling back
        if mutation is None or not mutation.events:
            return mutation
        if mutation.order.id != order_id:
            raise ValueError(f"a change of order {order_id} returned order {mutation.order.id}")
        row = _order_row(mutation.order)
        del row["id"]  # see _UPDATE_ORDER
        row["b_id"] = order_id
        row["b_version"] = before.version
        if fastsql.execute(conn, _UPDATE_ORDER, row).rowcount != 1:
            raise _Retry()
        self._append(conn, mutation)
        return mutation

    def _append(self, conn: sa.Connection, mutation: Mutation) -> None:
        order = mutation.order
        rows = []
        for rec in mutation.events:
            row = rec.to_dict()
            row["tenant_id"] = order.tenant_id
            row["location_id"] = order.location_id
            rows.append(row)
        fastsql.execute_many(conn, _INSERT_EVENTS, rows)
        if mutation.new_delivery_id:
            fastsql.execute(
                conn, _INSERT_DELIVERY, {"id": mutation.new_delivery_id, "order_id": order.id}
            )
        if mutation.subscribe_app_id:
            fastsql.execute(
                conn,
                self._insert_subscription,
                {
                    "order_id": order.id,
                    "app_id": mutation.subscribe_app_id,
                    "implicit": True,
                    "created_at": order.updated_at,
                },
            )
        for hook in self._hooks:
            hook(conn, order, mutation.events)

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
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    sa.select(s.deliveries.c.order_id).where(s.deliveries.c.id == delivery_id)
                )
            ).scalar_one_or_none()

    # -- Doshii-style subscriptions -----------------------------------------------

    async def subscribe(self, order_id: str, app_id: str, implicit: bool, at: str) -> None:
        async with self.write() as conn:
            await self._subscribe(conn, order_id, app_id, implicit, at)

    async def _subscribe(
        self, conn: AsyncConnection, order_id: str, app_id: str, implicit: bool, at: str
    ) -> None:
        # One statement: insert unless this app already follows the order.
        await conn.execute(
            self._insert_subscription,
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


def _in_transaction(conn: sa.Connection, body: Callable[[sa.Connection], T]) -> T:
    with conn.begin():
        return body(conn)


def _locked(exc: OperationalError) -> bool:
    """SQLite's "database is locked": another process held the write lock too long."""
    return "locked" in str(exc)


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
        "doc": order.as_dict(),  # serialized to JSON at once: no need for a deep copy
    }
