"""PostgreSQL and Redis for the tests: where they are, and skipping (or, with
ORDERCAST_REQUIRE_SERVICES=1 as in CI, failing) when they are unreachable."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator

import pytest

PG_HOST = os.environ.get("ORDERCAST_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ORDERCAST_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ORDERCAST_TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("ORDERCAST_TEST_PG_DB", "test")
REDIS_URL = os.environ.get("ORDERCAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("ORDERCAST_REQUIRE_SERVICES") == "1"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    if reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and ORDERCAST_REQUIRE_SERVICES=1")
    pytest.skip(message)


def admin_dsn() -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}"


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(prefix: str) -> str:
    """A brand-new PostgreSQL database named ``{prefix}_{random}``; its URL."""
    need_service("PostgreSQL", PG_HOST, PG_PORT)
    name = f"{prefix}_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{name}"')
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def fresh_postgres(prefix: str) -> AsyncIterator[str]:
    """A brand-new PostgreSQL database for one test (its own tables), dropped afterwards."""
    url = await create_database(prefix)
    try:
        yield url
    finally:
        await drop_database(url)
