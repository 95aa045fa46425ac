"""Storage adapters, chosen by URL scheme."""

from __future__ import annotations

from ordercast.ports import Store
from ordercast.storage.sql import SqlStore, engine_url

__all__ = ["SqlStore", "engine_url", "open_store"]


def open_store(url: str) -> Store:
    """``sqlite:///path.db`` (default) or ``postgresql://…``; anything else fails fast."""
    return SqlStore(url)
