"""Fixtures only (helpers live in tests/support): runtimes on SQLite and PostgreSQL, and a
world (tenant, location, channel app) behind an in-process HTTP client.

PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379) tests skip when
the service is unreachable, unless ORDERCAST_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ordercast.runtime import Runtime
from ordercast.settings import Settings
from support.services import REDIS_URL, create_database, drop_database, need_service
from support.world import World, make_world


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    url = asyncio.run(create_database(f"ordercast_test_{os.getpid()}"))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


@pytest.fixture
def redis_url() -> str:
    need_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ordercast.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/ordercast.db"


@pytest.fixture
async def runtime(sqlite_url: str) -> AsyncIterator[Runtime]:
    rt = await Runtime.open(Settings(database_url=sqlite_url, admin_token="admin-token-for-tests"))
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
async def any_runtime(database_url: str) -> AsyncIterator[Runtime]:
    """The same tests on SQLite and on PostgreSQL."""
    rt = await Runtime.open(
        Settings(database_url=database_url, admin_token="admin-token-for-tests")
    )
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
async def world(runtime: Runtime) -> AsyncIterator[World]:
    async for w in make_world(runtime):
        yield w


@pytest.fixture
async def any_world(any_runtime: Runtime) -> AsyncIterator[World]:
    async for w in make_world(any_runtime):
        yield w
