"""Fixtures for the security suite: the two-tenant estate.

On SQLite with the in-process bus by default. ``ORDERCAST_SECURITY_BACKEND=postgres`` runs it
on PostgreSQL with the Redis bus; ``two-nodes`` (meant for test_isolation_matrix.py) builds the
estate on node A and sends every WebSocket attack to node B of the same PostgreSQL + Redis, so
live events, the last-state cache and catch-ups cross the bus before they are checked.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from estate import BACKEND, Estate, build_estate

from support.cluster import new_prefix, open_node


@pytest.fixture
def backend_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(database URL, bus URL) of this run's backend (resolved outside the event loop)."""
    if BACKEND == "sqlite":
        return f"sqlite:///{tmp_path}/ordercast.db", "memory://"
    assert BACKEND in ("postgres", "two-nodes"), BACKEND
    return request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url")


@pytest.fixture
async def estate(backend_urls: tuple[str, str]) -> AsyncIterator[Estate]:
    database_url, bus_url = backend_urls
    prefix = new_prefix() if BACKEND != "sqlite" else None
    a = await open_node(database_url, bus_url, prefix)
    b = await open_node(database_url, bus_url, prefix) if BACKEND == "two-nodes" else None
    try:
        if b is not None:
            await b.gateway.start(port=0)
        async for e in build_estate(a):
            e.sockets = b
            yield e
    finally:
        if b is not None:
            await b.close()
        await a.close()
