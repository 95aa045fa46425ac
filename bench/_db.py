"""A throwaway database for one benchmark run (shared by bench/writes.py and
bench/webhooks.py): a SQLite file in a temporary folder, or a fresh PostgreSQL database on
127.0.0.1:5432 (user postgres, trust) dropped afterwards."""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def bench_database(db: str) -> AsyncIterator[str]:
    """Yield the ordercast database URL for ``db`` ("sqlite" or "postgresql")."""
    if db == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{Path(d) / 'bench.db'}"
        return
    name = f"ordercast_bench_{secrets.token_hex(4)}"
    await _pg(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
