"""SQLite WAL checkpoints run on the writer's background thread, not inside a COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from ordercast.storage import writer as writer_module
from ordercast.storage.writer import WAL_AUTOCHECKPOINT_PAGES, SqliteWriter


def _insert(i: int):  # type: ignore[no-untyped-def]
    def job(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (f"{i:06d}" + "x" * 4000,))
        return i

    return job


def _wal_pages(path: Path) -> tuple[int, int, int]:
    """(busy, log pages, pages copied) from a passive checkpoint by a separate connection."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    return int(row[0]), int(row[1]), int(row[2])


async def _until(done: Callable[[], bool], seconds: float) -> None:
    """Poll ``done`` (the checkpointer is a thread: there is no event to await)."""
    for _ in range(int(seconds / 0.02) + 1):
        if done():
            return
        await asyncio.sleep(0.02)


async def _writer(path: Path) -> SqliteWriter:
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    setup.commit()
    setup.close()
    return SqliteWriter(str(path), asyncio.Lock())


async def test_commits_never_checkpoint_below_the_safety_net(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Background checkpoints off: what is left is what the COMMITs themselves do.
    monkeypatch.setattr(writer_module, "CHECKPOINT_EVERY", 10**9)
    monkeypatch.setattr(writer_module, "CHECKPOINT_INTERVAL", 3600.0)
    path = tmp_path / "db.sqlite"
    writer = await _writer(path)
    try:
        # ~1,500 single-row transactions of ~4 KB: past SQLite's default 1,000-page
        # autocheckpoint, which would have copied and reset the log inside a COMMIT.
        for i in range(1500):
            assert await writer.run(_insert(i)) == i
        checked = await writer.run(
            lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        )
        assert checked == WAL_AUTOCHECKPOINT_PAGES
        busy, log_pages, _ = _wal_pages(path)
        assert busy == 0
        assert 1500 <= log_pages < WAL_AUTOCHECKPOINT_PAGES  # never reset by a COMMIT
    finally:
        await writer.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1500
    conn.close()


async def test_background_checkpoints_copy_the_log(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    writer = await _writer(path)
    try:
        for i in range(writer_module.CHECKPOINT_EVERY * 3):
            await writer.run(_insert(i))
        checkpointer = writer._checkpointer
        await _until(lambda: checkpointer.runs > 0, 10)
        assert checkpointer.runs >= 1
        assert checkpointer.last is not None
        busy, log_pages, copied = checkpointer.last
        assert busy == 0 and log_pages > 0 and copied > 0
        # A last commit is checkpointed within CHECKPOINT_INTERVAL even below the count.
        runs = checkpointer.runs
        await writer.run(_insert(10**6))
        await _until(lambda: checkpointer.runs > runs, writer_module.CHECKPOINT_INTERVAL + 10)
        assert checkpointer.runs > runs
        _, log_pages, copied = checkpointer.last
        assert copied == log_pages  # everything in the log is in the database file
    finally:
        await writer.close()
    assert writer._checkpointer._thread is not None
    assert not writer._checkpointer._thread.is_alive()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == (
        writer_module.CHECKPOINT_EVERY * 3 + 1
    )
    conn.close()


async def test_close_without_a_commit_starts_no_thread(tmp_path: Path) -> None:
    writer = await _writer(tmp_path / "db.sqlite")
    await writer.close()
    assert writer._checkpointer._thread is None
