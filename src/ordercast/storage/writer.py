"""SQLite's order writer: one thread, one plain connection, group commit.

Why this exists: through SQLAlchemy's asyncio layer every statement costs a greenlet
switch plus an aiosqlite thread hop, and an order change is about ten statements: many
times what SQLite itself spends on the whole transaction (the figures:
docs/benchmarks.md, "Figures behind code comments"). SQLite allows one writer at a time
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
(``_begin_immediate`` waits for it, in short steps, instead of failing at once).

Checkpoints off the commit path: in WAL mode SQLite copies the log back into the database
file (a checkpoint, with an fsync of each file) from inside the COMMIT that takes the log
past ``wal_autocheckpoint`` pages — by default every 1,000 pages, i.e. every few hundred
order changes, and each such COMMIT took hundreds of times as long as an ordinary one
(docs/benchmarks.md, "Figures behind code comments"), stalling every change queued behind
it (a latency spike for every subscriber of those orders). So
ordercast's connections checkpoint on their own only past :data:`WAL_AUTOCHECKPOINT_PAGES`
(a safety net), and the writer's checkpointer thread runs ``PRAGMA wal_checkpoint(PASSIVE)``
on its own connection after every :data:`CHECKPOINT_EVERY` commits and at most
:data:`CHECKPOINT_INTERVAL` seconds after any commit. A passive checkpoint never blocks the
writer; durability is unchanged (``synchronous=NORMAL``: a COMMIT is in the log, which the
OS keeps across a process crash, exactly as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
# A job's outcome: (True, value) or (False, exception).
Outcome = tuple[bool, Any]
# A batch handed to the writer thread: its jobs, and where and how to answer.
Batch = tuple[list[Job], asyncio.AbstractEventLoop, "asyncio.Future[list[Outcome]]"]

# How many queued jobs one transaction takes at most (bounds the latency of the first).
MAX_BATCH = 128

#: A connection checkpoints inside its own COMMIT only past this many log pages (~40 MB at
#: 4 KiB pages): the safety net for a log the background checkpoints cannot reset, i.e.
#: under writes that never pause (a fully copied log restarts at the next write otherwise).
WAL_AUTOCHECKPOINT_PAGES = 10_000
#: How long a writer waits for another process's write lock (``_begin_immediate``).
BUSY_TIMEOUT = 5.0
_FIRST_RETRY = 0.0001
_LAST_RETRY = 0.001
#: Commits between two background checkpoints, and the longest wait after a commit.
CHECKPOINT_EVERY = 64
CHECKPOINT_INTERVAL = 1.0

log = logging.getLogger("ordercast.storage.writer")


class SqliteWriter:
    """Runs ``job(connection)`` functions in write transactions on a dedicated thread.

    ``path`` is the database file. The connection is a plain ``sqlite3`` one in autocommit
    mode (transactions are begun here, ``BEGIN IMMEDIATE``) whose rows are ``sqlite3.Row``.
    ``lock`` is the store's in-process SQLite writer lock: held around each transaction so
    the store's other (asyncio) writers never contend with this connection for the file.
    """

    def __init__(self, path: str, lock: asyncio.Lock) -> None:
        self._path = path
        # The writer thread and its inbox (None asks it to close the connection and end).
        # Not a ThreadPoolExecutor: run_in_executor's concurrent Future, its chaining to an
        # asyncio future and the executor's bookkeeping cost a few times this queue's
        # hand-off in CPU per batch, and in a rush nearly every change is a batch of its
        # own (docs/profiles/rush-2026-12-03.md).
        self._inbox: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None  # only touched on the writer thread
        self._lock = lock
        self._queue: list[tuple[Job, asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._checkpointer = Checkpointer(path)
        # Read-only snapshots (``read``): their own connection, on the default executor.
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` in a write transaction; its return value once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((job, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` in a read transaction on a connection of its own (``query_only``),
        off the event loop: one snapshot of what is committed, taken without the write
        lock, so other processes' writers are never held up by what ``job`` spends."""
        return await asyncio.to_thread(self._read_sync, job)

    def _read_sync(self, job: Callable[[sqlite3.Connection], T]) -> T:
        with self._reader_lock:
            if self._reader is None:
                self._reader = reader_connection(self._path)
            conn = self._reader
            conn.execute("BEGIN")
            try:
                return job(conn)
            finally:
                conn.execute("ROLLBACK")

    async def close(self) -> None:
        while self._drainer is not None:
            await asyncio.shield(self._drainer)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._checkpointer.stop)
        await loop.run_in_executor(None, self._close_reader)
        thread, self._thread = self._thread, None
        if thread is None:
            self._close_sync()
        else:
            self._inbox.put(None)
            await loop.run_in_executor(None, thread.join)

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
                    answer: asyncio.Future[list[Outcome]] = loop.create_future()
                    self._hand_over((jobs, loop, answer))
                    try:
                        outcomes = await answer
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

    def _hand_over(self, batch: Batch) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name="ordercast-sqlite-writer", daemon=True
            )
            self._thread.start()
        self._inbox.put(batch)

    # -- on the writer thread ------------------------------------------------------------

    def _serve(self) -> None:
        while (batch := self._inbox.get()) is not None:
            jobs, loop, answer = batch
            try:
                result: Outcome = (True, self._apply(jobs))
            except BaseException as exc:  # handed to the waiting caller
                result = (False, exc)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
                loop.call_soon_threadsafe(_answer, answer, result)
        self._close_sync()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = writer_connection(self._path)
        return self._conn

    def _apply(self, jobs: list[Job]) -> list[Outcome]:
        """One transaction for ``jobs``. An error outside any one job (BEGIN, COMMIT) fails
        them all: nothing of the batch was committed."""
        try:
            return self._transaction(jobs)
        finally:
            self._checkpointer.committed()

    def _transaction(self, jobs: list[Job]) -> list[Outcome]:
        try:
            conn = self._connection()
            _begin_immediate(conn)
            try:
                if len(jobs) == 1:  # no other job to protect: no SAVEPOINT
                    try:
                        outcomes: list[Outcome] = [(True, jobs[0](conn))]
                    except Exception as exc:
                        conn.execute("ROLLBACK")
                        return [(False, exc)]
                else:
                    outcomes = [self._savepoint(conn, job) for job in jobs]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return outcomes
        except Exception as exc:
            return [(False, exc)] * len(jobs)

    @staticmethod
    def _savepoint(conn: sqlite3.Connection, job: Job) -> Outcome:
        conn.execute("SAVEPOINT job")
        try:
            value = job(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            return (False, exc)
        conn.execute("RELEASE job")
        return (True, value)

    def _close_reader(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, waiting for another process's write lock (an ``ordercast worker``
    beside ``ordercast run``, a CLI command) by trying again every 0.1 to 1 ms for up to
    :data:`BUSY_TIMEOUT` seconds, then failing with SQLite's "database is locked".

    Not SQLite's own busy handler (``busy_timeout``, off on this connection): it sleeps 1,
    2, 5, 10, 15, 20, 25 ... ms between tries, so a writer that finds the lock taken once
    loses at least a millisecond, and one whose tries keep landing while the other process
    writes back to back falls behind it for tens (measured: ``bench rush --worker``,
    docs/benchmarks.md "Webhook delivery in a process of its own"). In WAL mode the lock is
    only ever waited for here: a transaction that holds it never waits inside.
    """
    delay, deadline = _FIRST_RETRY, 0.0
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            now = time.monotonic()
            if not deadline:
                deadline = now + BUSY_TIMEOUT
            elif now >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, _LAST_RETRY)


def _answer(future: asyncio.Future[Any], result: Outcome) -> None:
    """On the loop: the writer thread's answer to a batch (unless its waiter gave up)."""
    if future.done():
        return
    ok, value = result
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class Checkpointer:
    """The writer's background checkpoints (see the module docstring): a daemon thread with
    its own connection, woken by :meth:`committed` (called on the writer thread)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._commits = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: Checkpoints run and the last ``(busy, log pages, pages copied)`` (for tests).
        self.runs = 0
        self.last: tuple[int, int, int] | None = None

    def committed(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._commits += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="ordercast-sqlite-checkpoint", daemon=True
                )
                self._thread.start()
            if self._commits >= CHECKPOINT_EVERY:
                self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        conn = sqlite3.connect(self._path, check_same_thread=False)
        sqlite_pragmas(conn)
        try:
            while True:
                self._wake.wait(CHECKPOINT_INTERVAL)
                self._wake.clear()
                with self._lock:
                    pending, self._commits = self._commits, 0
                    stopping = self._stopping
                if pending:
                    self._checkpoint(conn)
                if stopping:
                    return
        finally:
            conn.close()

    def _checkpoint(self, conn: Any) -> None:
        try:
            cur = conn.cursor()
            row = cur.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            cur.close()
        except sqlite3.Error as exc:  # the safety net still checkpoints; try again later
            log.warning("background WAL checkpoint failed: %s", exc)
            return
        self.runs += 1
        self.last = (int(row[0]), int(row[1]), int(row[2])) if row else None


def sqlite_pragmas(dbapi_conn: Any, _record: Any = None) -> None:
    """Every ordercast SQLite connection (the store's asyncio engine and this writer's)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cur.close()


def writer_connection(path: str) -> sqlite3.Connection:
    """The writer thread's connection: autocommit mode (``isolation_level=None``: we begin
    transactions ourselves, not pysqlite before the first write), ``sqlite3.Row`` rows."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    sqlite_pragmas(conn)
    conn.execute("PRAGMA busy_timeout=0")  # the lock is waited for by _begin_immediate
    return conn


def reader_connection(path: str) -> sqlite3.Connection:
    """A read-only snapshot connection (``SqliteWriter.read``): autocommit mode, ``sqlite3.Row``
    rows, ``query_only`` (a write through it is an error, never a wait for the lock)."""
    conn = writer_connection(path)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA query_only=ON")
    return conn
