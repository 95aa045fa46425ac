"""The one way ordercast runs its hot and batch SQL: named statements through a connector.

A :class:`Connector` runs a transaction body (``transaction``; ``snapshot`` for a read-only
one), or one statement on its own (``execute``, ``fetch_all``). The body gets a
``ports.Tx`` (``execute``, ``execute_many``, ``fetch_all``, ``fetch_one``) that runs the
statements of ``storage/sql/`` by name. Two implementations:

* :class:`SqliteConnector`: every transaction runs on the store's writer thread
  (``storage/writer.py``: one plain ``sqlite3`` connection, ``BEGIN IMMEDIATE``, group
  commit). The body is a coroutine, but ``SqliteTx``'s methods never suspend, so the thread
  drives it to completion with one ``send`` (:func:`run_to_completion`): the same body code
  serves both databases, and a SQLite transaction is still one thread hop.
* :class:`PgConnector`: an asyncpg pool; a body runs in ``connection.transaction()``, a
  single statement in its own implicit transaction.

Each driver's errors are mapped in ONE function (:func:`sqlite_error`, :func:`pg_error`) to
``ordercast.errors.StorageError`` and its subclasses, so nothing above storage sees a
driver exception: a constraint violation, a locked SQLite file, a lost connection
(asyncpg's ``InterfaceError`` included).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

import asyncpg  # type: ignore[import-untyped]

from ordercast.errors import (
    IntegrityViolation,
    StorageBusy,
    StorageError,
    StorageUnavailable,
)
from ordercast.ports import Params, Row, Tx
from ordercast.storage.queries import Query
from ordercast.storage.writer import SqliteWriter

T = TypeVar("T")
NO_PARAMS: Params = {}


class Connector(Protocol):
    async def transaction(self, body: Callable[[Tx], Awaitable[T]]) -> T: ...
    async def snapshot(self, body: Callable[[Tx], Awaitable[T]]) -> T: ...
    async def execute(self, query: str, params: Params = NO_PARAMS) -> int: ...
    async def fetch_all(self, query: str, params: Params = NO_PARAMS) -> list[Row]: ...
    async def close(self) -> None: ...


# -- driver errors ---------------------------------------------------------------------


def sqlite_error(exc: sqlite3.Error) -> StorageError:
    """The ordercast error for a ``sqlite3`` error (raise it ``from exc``)."""
    message = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        # "UNIQUE constraint failed: events.order_id, events.seq": SQLite names the columns.
        _, _, columns = message.partition(": ")
        table = columns.split(".", 1)[0] if "." in columns else None
        return IntegrityViolation(message, table=table, constraint=columns or None)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return StorageBusy(message)
    return StorageError(message)


def pg_error(exc: Exception) -> StorageError:
    """The ordercast error for an asyncpg (or connection) error (raise it ``from exc``)."""
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityViolation(str(exc), table=exc.table_name, constraint=exc.constraint_name)
    # SQLSTATE class 08 (connection exception) and 57 (the server shutting down, or this
    # backend terminated by an administrator) are a lost connection too.
    lost = (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)
    if isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, lost):
        return StorageError(str(exc))
    # asyncpg.InterfaceError (connection closed or lost), OSError (refused, reset), timeouts
    return StorageUnavailable(f"database connection failed: {exc}")


_PG_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


def connection_error(exc: BaseException) -> StorageUnavailable | StorageBusy | None:
    """For an error raised through another layer (SQLAlchemy's engine wraps the driver's
    exception in its own): :class:`StorageUnavailable` when the driver error under it is a
    lost or refused connection, :class:`StorageBusy` when it is a locked SQLite file; else
    None (the caller keeps the error it has). Mapped by the functions above."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, (sqlite3.Error, *_PG_ERRORS)):
        cause = cause.__cause__
    if isinstance(cause, sqlite3.Error):
        mapped = sqlite_error(cause)
    elif isinstance(cause, Exception):
        mapped = pg_error(cause)
    else:
        return None
    return mapped if isinstance(mapped, StorageUnavailable | StorageBusy) else None


# -- SQLite ----------------------------------------------------------------------------


class SqliteTx:
    """``ports.Tx`` on the writer thread's ``sqlite3`` connection (never suspends)."""

    __slots__ = ("_conn", "_sql")

    def __init__(self, conn: sqlite3.Connection, queries: dict[str, Query]) -> None:
        self._conn = conn
        self._sql = queries

    async def execute(self, query: str, params: Params = NO_PARAMS, /) -> int:
        try:
            return self._conn.execute(self._sql[query].sql, params).rowcount
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc

    async def execute_many(self, query: str, rows: Sequence[Params], /) -> None:
        if not rows:
            return
        try:
            self._conn.executemany(self._sql[query].sql, rows)
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc

    async def fetch_all(self, query: str, params: Params = NO_PARAMS, /) -> list[Row]:
        try:
            return self._conn.execute(self._sql[query].sql, params).fetchall()
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc

    async def fetch_one(self, query: str, params: Params = NO_PARAMS, /) -> Row | None:
        try:
            row: Row | None = self._conn.execute(self._sql[query].sql, params).fetchone()
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc
        return row


def run_to_completion(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a body awaiting only a ``SqliteTx``)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a SQLite transaction body awaited something other than its Tx")


class SqliteConnector:
    def __init__(self, writer: SqliteWriter, queries: dict[str, Query]) -> None:
        self.writer = writer
        self.queries = queries

    async def transaction(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        queries = self.queries

        def job(conn: sqlite3.Connection) -> T:
            return run_to_completion(body(SqliteTx(conn, queries)))  # type: ignore[arg-type]

        try:
            return await self.writer.run(job)
        except sqlite3.Error as exc:  # BEGIN or COMMIT
            raise sqlite_error(exc) from exc

    async def snapshot(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """``body`` in a read-only transaction: one snapshot of what is committed, on a
        connection of its own off the event loop, never holding the write lock."""
        queries = self.queries

        def job(conn: sqlite3.Connection) -> T:
            return run_to_completion(body(SqliteTx(conn, queries)))  # type: ignore[arg-type]

        try:
            return await self.writer.read(job)
        except sqlite3.Error as exc:  # BEGIN
            raise sqlite_error(exc) from exc

    async def execute(self, query: str, params: Params = NO_PARAMS) -> int:
        async def body(tx: Tx) -> int:
            return await tx.execute(query, params)

        return await self.transaction(body)

    async def fetch_all(self, query: str, params: Params = NO_PARAMS) -> list[Row]:
        async def body(tx: Tx) -> list[Row]:
            return await tx.fetch_all(query, params)

        return await self.transaction(body)

    async def close(self) -> None:
        await self.writer.close()


# -- PostgreSQL ------------------------------------------------------------------------


class PgTx:
    """``ports.Tx`` on an asyncpg connection inside a transaction."""

    __slots__ = ("_conn", "_q")

    def __init__(self, conn: Any, queries: dict[str, Query]) -> None:
        self._conn = conn
        self._q = queries

    async def execute(self, query: str, params: Params = NO_PARAMS, /) -> int:
        q = self._q[query]
        try:
            status = await self._conn.execute(q.sql, *[params[n] for n in q.params])
        except _PG_ERRORS as exc:
            raise pg_error(exc) from exc
        return _row_count(status)

    async def execute_many(self, query: str, rows: Sequence[Params], /) -> None:
        if not rows:
            return
        q = self._q[query]
        try:  # one round trip for all
            await self._conn.executemany(q.sql, [[r[n] for n in q.params] for r in rows])
        except _PG_ERRORS as exc:
            raise pg_error(exc) from exc

    async def fetch_all(self, query: str, params: Params = NO_PARAMS, /) -> list[Row]:
        q = self._q[query]
        try:
            rows: list[Row] = await self._conn.fetch(q.sql, *[params[n] for n in q.params])
        except _PG_ERRORS as exc:
            raise pg_error(exc) from exc
        return rows

    async def fetch_one(self, query: str, params: Params = NO_PARAMS, /) -> Row | None:
        q = self._q[query]
        try:
            row: Row | None = await self._conn.fetchrow(q.sql, *[params[n] for n in q.params])
        except _PG_ERRORS as exc:
            raise pg_error(exc) from exc
        return row


class PgConnector:
    """An asyncpg pool, opened on first use (``dsn``: ``postgresql://…``)."""

    def __init__(self, dsn: str, queries: dict[str, Query], max_size: int = 20) -> None:
        self.dsn = dsn
        self.queries = queries
        self.max_size = max_size
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def _acquire_pool(self) -> Any:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    try:
                        self._pool = await asyncpg.create_pool(
                            self.dsn, min_size=1, max_size=self.max_size
                        )
                    except _PG_ERRORS as exc:
                        raise pg_error(exc) from exc
        return self._pool

    async def transaction(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        pool = await self._acquire_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await body(PgTx(conn, self.queries))
        except _PG_ERRORS as exc:  # BEGIN, COMMIT, the pool
            raise pg_error(exc) from exc

    async def snapshot(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """``body`` in a read-only REPEATABLE READ transaction: one snapshot."""
        pool = await self._acquire_pool()
        try:
            async with (
                pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                return await body(PgTx(conn, self.queries))
        except _PG_ERRORS as exc:
            raise pg_error(exc) from exc

    async def execute(self, query: str, params: Params = NO_PARAMS) -> int:
        pool = await self._acquire_pool()
        q = self.queries[query]
        try:
            status = await pool.execute(q.sql, *[params[n] for n in q.params])
        except _PG_ERRORS as exc:
            raise pg_error(exc) from exc
        return _row_count(status)

    async def fetch_all(self, query: str, params: Params = NO_PARAMS) -> list[Row]:
        pool = await self._acquire_pool()
        q = self.queries[query]
        try:
            rows: list[Row] = await pool.fetch(q.sql, *[params[n] for n in q.params])
        except _PG_ERRORS as exc:
            raise pg_error(exc) from exc
        return rows

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


def _row_count(status: str) -> int:
    """asyncpg's command tag ("UPDATE 1", "INSERT 0 3") → the row count."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1
