"""Cluster-wide live state of the Pusher gateway, chosen by the bus URL.

Several ``ordercast run`` nodes behind a load balancer must answer as one server: who is in
a presence channel, how many sockets subscribe to a channel, whether a channel just became
occupied or vacated. That state lives in a :class:`Registry`:

* ``memory://`` — :class:`~ordercast.cluster.memory.MemoryRegistry`, one process (nodes that
  share one :class:`~ordercast.cluster.memory.MemoryCluster` object, which the contract tests
  use to play several nodes);
* ``redis://`` — :class:`~ordercast.cluster.redis.RedisRegistry`: hashes in Redis changed by
  Lua scripts (each a single atomic step), every key under the deployment's prefix.

Each node registers itself and beats every few seconds; a node that stops beating is
*reaped* by whichever live node looks first (one atomic script, so exactly once): its
subscriptions and presence members are removed and the caller gets the resulting
:class:`Departure` list (``member_removed`` to send, ``channel_vacated`` to report).

A node's registry calls must be made in order (the gateway's glue,
:mod:`ordercast.gateway.cluster`, runs them one after another), since counts go up and down.
"""

from __future__ import annotations

from ordercast.cluster.types import (
    ADDED,
    FULL,
    GONE,
    OCCUPIED,
    PRESENT,
    STALE,
    VACATED,
    Departure,
    Joined,
    NodeInfo,
    Reaped,
    Registry,
)
from ordercast.errors import ConfigError

__all__ = [
    "ADDED",
    "FULL",
    "GONE",
    "OCCUPIED",
    "PRESENT",
    "STALE",
    "VACATED",
    "Departure",
    "Joined",
    "NodeInfo",
    "Reaped",
    "Registry",
    "open_registry",
]


def open_registry(bus_url: str, prefix: str, node_id: str) -> Registry:
    """The registry matching the bus: Redis for ``redis://``, in-process for ``memory://``."""
    if bus_url.startswith("memory://"):
        from ordercast.cluster.memory import MemoryCluster, MemoryRegistry

        return MemoryRegistry(MemoryCluster(), node_id)
    if bus_url.startswith(("redis://", "rediss://", "unix://")):
        from ordercast.cluster.redis import RedisRegistry

        return RedisRegistry(bus_url, prefix, node_id)
    raise ConfigError(f"unsupported bus URL '{bus_url}': use memory:// or redis://host:6379/0")
