"""The wake-up bus, chosen by URL scheme: ``memory://`` (one process) or ``redis://``."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

from ordercast.errors import ConfigError
from ordercast.ports import Bus

__all__ = ["default_prefix", "open_bus"]


def open_bus(url: str, prefix: str = "ordercast:") -> Bus:
    """The bus for ``url``; ``prefix`` (ending in ``:``) namespaces every Redis channel and
    key it uses."""
    if url.startswith("memory://"):
        from ordercast.bus.memory import MemoryBus

        return MemoryBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from ordercast.bus.redis import RedisBus

        return RedisBus(url, prefix)
    raise ConfigError(f"unsupported bus URL '{url}': use memory:// or redis://host:6379/0")


def default_prefix(bus_url: str, database_url: str) -> str:
    """A namespace for one deployment: ``ordercast:``, a short hash of the Redis database
    number and the storage URL, and ``:``. Redis pub/sub ignores database numbers, so two
    deployments on one Redis would otherwise hear each other's orders. Nodes of one
    deployment share it as long as they spell both URLs alike (else set
    ``ORDERCAST_BUS_PREFIX``)."""
    parts = urlsplit(bus_url)
    db = (parse_qs(parts.query).get("db") or [""])[0] or parts.path.strip("/") or "0"
    digest = hashlib.sha256(f"{db}\n{database_url}".encode()).hexdigest()[:12]
    return f"ordercast:{digest}:"
