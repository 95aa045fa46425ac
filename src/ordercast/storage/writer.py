"""SQLite's order writer: one thread, one plain connection, group commit.

Why this exists: through SQLAlchemy's asyncio layer every statement costs a greenlet
switch plus an aiosqlite thread hop (~60 µs each, about ten statements per order change),
while SQLite itself runs such a transaction in ~30 µs. SQLite allows one writer at a time
anyway, so order writes go to ONE thread holding ONE synchronous pysqlite connection, and
a whole transaction — read the row, the pure ``change`` callback, update, inserts, the
transaction hooks, commit — runs there in a single hop.

Group commit (the classic database-log technique: many transactions share one commit):
jobs submitted while a transaction runs queue up and are applied together in the next
transaction, in submission order, each inside its own SAVEPOINT, so a job that raises is
rolled back alone and the others still commit. A job sees the writes of the jobs before it
in the same transaction (same connection), so per-order ``seq`` stays gap-free. Callers
learn their result only after the COMMIT, so nothing is published before it is durable.

Transactions start with ``BEGIN IMMEDIATE``: the database write lock is taken before the
first read, so another process cannot change the row between our read and our update
(``busy_timeout`` makes us wait for it instead of failing at once).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.pool import NullPool

T = TypeVar("T")
Job = Callable[[sa.Connection], Any]
# A job's outcome: (True, value) or (False, exception).
Outcome = tuple[bool, Any]

# How many queued jobs one transaction takes at most (bounds the latency of the first).
MAX_BATCH = 128


class SqliteWriter:
    """Runs ``job(connection)`` functions in write transactions on a dedicated thread.

    ``lock`` is the store's in-process SQLite writer lock: held around each transaction so
    the store's other (asyncio) writers never contend with this connection for the file.
    """

    def __init__(self, url: sa.URL, lock: asyncio.Lock) -> None:
        self._engine = sa.create_engine(url, poolclass=NullPool)
        sa_event.listen(self._engine, "connect", _writer_connect)
        sa_event.listen(self._engine, "begin", _begin_immediate)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ordercast-sqlite-writer")
        self._conn: sa.Connection | None = None  # only touched on the writer thread
        self._lock = lock
        self._queue: list[tuple[Job, asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, job: Callable[[sa.Connection], T]) -> T:
        """Run ``job`` in a write transaction; its return value once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((job, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def close(self) -> None:
        while self._drainer is not None:
            await asyncio.shield(self._drainer)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)

    # -- on the event loop ---------------------------------------------------------------

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                async with self._lock:
                    # Callers cancelled while queued are dropped, never run.
                    batch = [(j, f) for j, f in self._queue[:MAX_BATCH] if not f.done()]
                    del self._queue[:MAX_BATCH]
                    if not batch:
                        continue
                    jobs = [job for job, _ in batch]
                    try:
                        outcomes = await loop.run_in_executor(self._executor, self._apply, jobs)
                    except BaseException:  # cancelled: the outcome is unknown to us
                        for _, future in batch:
                            future.cancel()
                        raise
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():  # the caller was cancelled meanwhile
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._drainer = None
            if self._queue:  # cancelled (loop shutting down): nobody would ever answer them
                for _, future in self._queue:
                    future.cancel()
                self._queue.clear()

    # -- on the writer thread ------------------------------------------------------------

    def _connection(self) -> sa.Connection:
        if self._conn is None or self._conn.invalidated:
            self._conn = self._engine.connect()
        return self._conn

    def _apply(self, jobs: list[Job]) -> list[Outcome]:
        """One transaction for ``jobs``. An error outside any one job (BEGIN, COMMIT) fails
        them all: nothing of the batch was committed."""
        try:
            conn = self._connection()
            if len(jobs) == 1:  # no other job to protect: no SAVEPOINT
                try:
                    with conn.begin():
                        return [(True, jobs[0](conn))]
                except Exception as exc:
                    return [(False, exc)]
            raw = conn.connection.dbapi_connection
            assert raw is not None
            outcomes: list[Outcome] = []
            with conn.begin():
                for job in jobs:
                    # Straight on the driver: two statements per job, not worth SQLAlchemy's
                    # per-statement overhead, and SQLAlchemy need not know about them.
                    raw.execute("SAVEPOINT job")
                    try:
                        value = job(conn)
                    except Exception as exc:
                        raw.execute("ROLLBACK TO job")
                        raw.execute("RELEASE job")
                        outcomes.append((False, exc))
                    else:
                        raw.execute("RELEASE job")
                        outcomes.append((True, value))
            return outcomes
        except Exception as exc:
            return [(False, exc)] * len(jobs)

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._engine.dispose()


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Every ordercast SQLite connection (the store's asyncio engine and this writer's)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _writer_connect(dbapi_conn: sqlite3.Connection, record: Any) -> None:
    # Transactions are begun explicitly (``_begin_immediate``), not by pysqlite's implicit
    # deferred BEGIN before the first write (SQLAlchemy's documented pysqlite recipe).
    dbapi_conn.isolation_level = None
    sqlite_pragmas(dbapi_conn, record)


def _begin_immediate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
