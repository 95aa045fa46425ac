"""``ordercast worker``'s own defaults: only where the operator set nothing."""

from __future__ import annotations

import pytest

from ordercast.cli import _worker_defaults
from ordercast.settings import load_settings


def test_sqlite_and_memory_bus_poll_and_coalesce_longer_and_shorter() -> None:
    s = _worker_defaults(load_settings(database_url="sqlite:///x.db", bus_url="memory://"))
    assert (s.webhook_poll_seconds, s.webhook_coalesce_seconds) == (0.05, 0.1)


def test_postgres_and_redis_keep_the_node_defaults() -> None:
    base = load_settings(
        database_url="postgresql://u@127.0.0.1:5432/db", bus_url="redis://127.0.0.1:6379/0"
    )
    s = _worker_defaults(base)
    assert (s.webhook_poll_seconds, s.webhook_coalesce_seconds) == (0.5, 0.02)


def test_what_the_operator_set_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERCAST_WEBHOOK_POLL_SECONDS", "2")
    monkeypatch.setenv("ORDERCAST_WEBHOOK_COALESCE_SECONDS", "0")
    s = _worker_defaults(load_settings(database_url="sqlite:///x.db", bus_url="memory://"))
    assert (s.webhook_poll_seconds, s.webhook_coalesce_seconds) == (2.0, 0.0)
