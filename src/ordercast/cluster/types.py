"""The registry's interface and values (see :mod:`ordercast.cluster`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Protocol

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
