"""The wake-up bus, chosen by URL scheme: ``memory://`` (one process) or ``redis://``."""

from __future__ import annotations

from ordercast.errors import ConfigError
from ordercast.ports import Bus

__all__ = ["open_bus"]


def open_bus(url: str) -> Bus:
    if url.startswith("memory://"):
        from ordercast.bus.memory import MemoryBus

        return MemoryBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from ordercast.bus.redis import RedisBus

        return RedisBus(url)
    raise ConfigError(f"unsupported bus URL '{url}': use memory:// or redis://host:6379/0")
