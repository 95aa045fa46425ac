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

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

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
    "default_prefix",
    "open_registry",
]

#: :meth:`Registry.count` results.
OCCUPIED: Final = 1  # the cluster's first subscriber of the channel
VACATED: Final = -1  # the cluster's last subscriber of the channel left
#: :meth:`Registry.count`/:meth:`Registry.join` result for a node that was declared dead and
#: reaped: its state is gone; it must drop its sockets (clients reconnect) and re-register.
STALE: Final = -2

#: :attr:`Joined.result` values.
ADDED: Final = "added"  # first socket of this user in the cluster: member_added to the others
PRESENT: Final = "present"  # the user was already a member (another socket, maybe another node)
FULL: Final = "full"  # the channel has max_members users and this one is not among them
GONE: Final = "stale"  # this node was reaped (see STALE)


@dataclass(frozen=True, slots=True)
class Joined:
    result: str  # ADDED | PRESENT | FULL | GONE
    members: dict[str, Any] = field(default_factory=dict)  # user_id -> user_info, cluster-wide


@dataclass(frozen=True, slots=True)
class Departure:
    """What reaping a dead node undid: a presence member gone from the cluster
    (``user_id`` set), or a channel left with no subscriber anywhere (``user_id`` None)."""

    app_id: str
    channel: str
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reaped:
    """The nodes a reap removed (their in-flight wake-ups may be lost: catch up from storage)
    and what their removal undid."""

    nodes: list[str] = field(default_factory=list)
    departures: list[Departure] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    last_beat: float  # unix seconds
    info: dict[str, Any]  # what the node reported with its last beat (connections, urls)


class Registry(Protocol):
    node_id: str
    #: True when other processes may share this registry (Redis): cross-node messages needed.
    shared: bool

    async def register(self, now: float, info: dict[str, Any]) -> None: ...
    async def heartbeat(self, now: float, info: dict[str, Any]) -> bool: ...
    async def count(self, app_id: str, channel: str, delta: int) -> int: ...
    async def join(
        self,
        app_id: str,
        channel: str,
        user_id: str,
        user_info: Any,
        first_local: bool,
        max_members: int,
    ) -> Joined: ...
    async def leave(self, app_id: str, channel: str, user_id: str) -> bool: ...
    async def channels(self, app_id: str) -> dict[str, int]: ...
    async def subscription_count(self, app_id: str, channel: str) -> int: ...
    async def members(self, app_id: str, channel: str) -> dict[str, Any]: ...
    async def user_count(self, app_id: str, channel: str) -> int: ...
    async def reap(self, cutoff: float, node_id: str | None = None) -> Reaped: ...
    async def nodes(self) -> list[NodeInfo]: ...
    async def close(self) -> None: ...


def default_prefix(database_url: str) -> str:
    """A namespace specific to the deployment: nodes on the same database share it."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:10]
    return f"ordercast:{digest}:"


def open_registry(bus_url: str, prefix: str, node_id: str) -> Registry:
    """The registry matching the bus: Redis for ``redis://``, in-process for ``memory://``."""
    if bus_url.startswith("memory://"):
        from ordercast.cluster.memory import MemoryCluster, MemoryRegistry

        return MemoryRegistry(MemoryCluster(), node_id)
    if bus_url.startswith(("redis://", "rediss://", "unix://")):
        from ordercast.cluster.redis import RedisRegistry

        return RedisRegistry(bus_url, prefix, node_id)
    raise ConfigError(f"unsupported bus URL '{bus_url}': use memory:// or redis://host:6379/0")
