"""Storage adapters, chosen by URL scheme."""

from __future__ import annotations

from ordercast.storage.sql import PostgresStore, SqliteStore, SqlStore, engine_url, open_store

__all__ = ["PostgresStore", "SqlStore", "SqliteStore", "engine_url", "open_store"]
