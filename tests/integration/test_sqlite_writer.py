"""The SQLite writer's thread: transactions run off the event loop (a write that blocks on
the disk must not stall every socket: docs/profiles/rush-2026-12-03.md), in submission
order, and every caller gets its own outcome, a cancelled one included."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ordercast.storage.writer import SqliteWriter


def _setup(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)")
    conn.commit()
    conn.close()


def _insert(v: str, pause: float = 0.0):  # type: ignore[no-untyped-def]
    def job(conn: sqlite3.Connection) -> tuple[int, str]:
        cur = conn.execute("INSERT INTO t (v) VALUES (?)", (v,))
        time.sleep(pause)  # a write the disk holds up
        return int(cur.lastrowid or 0), threading.current_thread().name

    return job


def _rows(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT v FROM t ORDER BY id")]
    finally:
        conn.close()


async def test_batches_run_off_the_loop_in_order_each_with_its_outcome(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    _setup(path)
    writer = SqliteWriter(str(path), asyncio.Lock())
    try:
        slow = asyncio.ensure_future(writer.run(_insert("slow", pause=0.3)))
        ticks = 0
        while not slow.done():  # the loop runs while the writer's transaction is held up
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks >= 10
        assert slow.result() == (1, "ordercast-sqlite-writer")
        results = await asyncio.gather(
            *(writer.run(_insert(f"v{i}")) for i in range(10)),
            writer.run(_insert("v3")),  # UNIQUE violation: fails alone
            writer.run(_insert("last")),
            return_exceptions=True,
        )
        assert [r[0] for r in results[:10]] == list(range(2, 12))  # type: ignore[index]
        assert isinstance(results[10], sqlite3.IntegrityError)
        assert results[11] == (12, "ordercast-sqlite-writer")
    finally:
        await writer.close()
    assert _rows(path) == ["slow", *(f"v{i}" for i in range(10)), "last"]


async def test_a_caller_cancelled_while_its_batch_runs(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    _setup(path)
    writer = SqliteWriter(str(path), asyncio.Lock())
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        slow = asyncio.ensure_future(writer.run(_insert("slow", pause=0.2)))
        await asyncio.sleep(0.05)  # the batch is on the writer thread now
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        # The writer goes on: the next caller gets its answer, the late one is dropped.
        assert (await asyncio.wait_for(writer.run(_insert("next")), 10))[1] == (
            "ordercast-sqlite-writer"
        )
    finally:
        await writer.close()
        loop.set_exception_handler(None)
    assert errors == []
    assert _rows(path) == ["slow", "next"]  # committed: cancelling cannot undo a COMMIT


async def test_another_process_holding_the_write_lock_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second connection (as ``ordercast worker`` or a CLI command) holding the lock: the
    writer's transaction waits for it, the loop keeps running, and once it is released the
    transaction commits; held past BUSY_TIMEOUT, the batch fails with SQLite's "locked"."""
    from ordercast.storage import writer as writer_module

    path = tmp_path / "db.sqlite"
    _setup(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer = SqliteWriter(str(path), asyncio.Lock())
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (v) VALUES ('other')")
        waiting = asyncio.ensure_future(writer.run(_insert("mine")))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        other.execute("COMMIT")
        assert (await asyncio.wait_for(waiting, 5))[0] == 2
        assert _rows(path) == ["other", "mine"]

        monkeypatch.setattr(writer_module, "BUSY_TIMEOUT", 0.2)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await asyncio.wait_for(writer.run(_insert("late")), 5)
        finally:
            other.execute("ROLLBACK")
        assert (await writer.run(_insert("after")))[0] == 3
        assert _rows(path) == ["other", "mine", "after"]
    finally:
        other.close()
        await writer.close()


async def test_a_read_snapshot_never_takes_the_write_lock_and_cannot_write(
    tmp_path: Path,
) -> None:
    """``read``: what is committed, as of one snapshot, while another connection holds the
    write lock and writes; a write through it is refused, not queued for the lock."""
    path = tmp_path / "db.sqlite"
    _setup(path)
    writer = SqliteWriter(str(path), asyncio.Lock())
    try:
        await writer.run(_insert("committed"))
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock for the whole read
        other.execute("INSERT INTO t (v) VALUES ('uncommitted')")

        def snapshot(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
            first = [r[0] for r in conn.execute("SELECT v FROM t ORDER BY id")]
            other.execute("COMMIT")  # committed after the snapshot began: not seen
            again = [r[0] for r in conn.execute("SELECT v FROM t ORDER BY id")]
            return first, again

        assert await writer.read(snapshot) == (["committed"], ["committed"])
        assert await writer.read(lambda c: [r[0] for r in c.execute("SELECT v FROM t")]) == [
            "committed",
            "uncommitted",
        ]
        other.close()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t (v) VALUES ('through the snapshot')")

        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await writer.read(write)
        assert _rows(path) == ["committed", "uncommitted"]
    finally:
        await writer.close()
