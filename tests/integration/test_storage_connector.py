"""The storage connector: named SQL per database, one transaction body for both, and the
drivers' errors mapped to ordercast's (a constraint, a lost PostgreSQL connection)."""

from __future__ import annotations

import asyncio
import secrets
import types
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import asyncpg
import pytest

from ordercast.errors import IntegrityViolation, StorageUnavailable
from ordercast.ports import Tx
from ordercast.storage import PostgresStore, SqliteStore, SqlStore, open_store, queries
from ordercast.storage.queries import parse, positional


def test_named_sql_parses_and_numbers_parameters() -> None:
    text = "-- name: one\n-- what it does\nSELECT :a, :b::int, :a\n\n-- name: two\nSELECT 1\n"
    assert parse(text) == {"one": "SELECT :a, :b::int, :a", "two": "SELECT 1"}
    assert positional("SELECT :a, :b::int[], :a, x::text") == (
        "SELECT $1, $2::int[], $1, x::text",
        ("a", "b"),
    )
    with pytest.raises(ValueError, match="named twice"):
        parse("-- name: x\nSELECT 1\n-- name: x\nSELECT 2\n")


def test_both_databases_name_the_statements_the_stores_run() -> None:
    sqlite, pg = queries.load("sqlite"), queries.load("postgresql")
    # The claim is written once per database: SQLite selects then marks in one
    # transaction; PostgreSQL claims, and records outcomes, in one statement each.
    assert sqlite.keys() - pg.keys() == {"claim_candidates", "claim_message"}
    # PostgreSQL also takes an advisory lock to expand deferred changes one at a time (on
    # SQLite the write lock does it).
    assert pg.keys() - sqlite.keys() == {"claim_messages", "record_outcomes", "outbox_expand_lock"}
    # Comment lines are dropped: a ``:word`` in a description is no parameter.
    assert all(q.sql and not q.sql.lstrip().startswith("--") for q in pg.values())
    assert pg["claim_messages"].params[:2] == ("now", "saturated")


def test_open_store_picks_the_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_store(f"sqlite:///{tmp_path}/a.db"), SqliteStore)
    assert isinstance(open_store("postgresql://u@127.0.0.1/db"), PostgresStore)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    s = open_store(database_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


async def _tenant(tx: Tx, tenant_id: str) -> None:
    # Through the one statement both databases share that needs no parent rows.
    await tx.execute(
        "insert_order",
        {
            "id": tenant_id,
            "tenant_id": "t",
            "location_id": "l",
            "status": "submitted",
            "version": 1,
            "user_id": None,
            "external_order_ref": None,
            "created_at": "c",
            "updated_at": "u",
            "doc": "{}",
        },
    )


async def test_a_constraint_is_an_integrity_violation_and_rolls_back(store: SqlStore) -> None:
    async def twice(tx: Tx) -> None:
        await _tenant(tx, "ord_1")
        await _tenant(tx, "ord_1")

    with pytest.raises(IntegrityViolation) as refused:
        await store.connector.transaction(twice)
    assert refused.value.table == "orders"
    assert refused.value.constraint  # the constraint (PostgreSQL) or its columns (SQLite)
    assert await store.get_order("ord_1") is None  # nothing of the body was committed

    async def once(tx: Tx) -> int:
        await _tenant(tx, "ord_2")
        row = await tx.fetch_one("order_version_for_update", {"id": "ord_2"})
        assert row is not None
        return int(row["version"])

    assert await store.connector.transaction(once) == 1
    order_rows = await store.connector.fetch_all("order_subscribers", {"order_id": "ord_2"})
    assert order_rows == []


async def test_a_sqlite_body_awaits_only_its_transaction(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/x.db")
    await store.migrate()
    try:

        @types.coroutine
        def suspend() -> Generator[None, None, None]:
            yield  # what awaiting a future does: give control back to an event loop

        async def suspends(tx: Tx) -> None:
            await suspend()

        async def sleeps(tx: Tx) -> None:
            await asyncio.sleep(0.001)  # the writer thread has no event loop

        with pytest.raises(RuntimeError, match="awaited something other"):
            await store.connector.transaction(suspends)
        with pytest.raises(RuntimeError, match="no running event loop"):
            await store.connector.transaction(sleeps)
    finally:
        await store.close()


async def test_a_lost_postgres_connection_is_storage_unavailable(pg_url: str) -> None:
    # A database of its own, so the only backend idle in a transaction there is ours.
    base, _, _ = pg_url.rpartition("/")
    name = f"ordercast_lost_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    store = open_store(f"{base}/{name}")
    try:
        await store.migrate()

        async def cut_off(tx: Tx) -> None:
            await tx.fetch_one("next_timer_due")  # now idle in a transaction
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND state = 'idle in transaction'",
                name,
            )
            await tx.fetch_one("next_timer_due")

        with pytest.raises(StorageUnavailable):
            await store.connector.transaction(cut_off)
        # The pool replaces the lost connection: the next transaction works.
        assert await store.connector.fetch_all("timer_kinds", {"order_id": "x"}) == []
    finally:
        await store.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
