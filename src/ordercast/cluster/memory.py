"""The registry in process memory: one node, or several sharing one :class:`MemoryCluster`
(what the contract tests do to play a cluster without Redis). Same rules as the Redis
scripts in :mod:`ordercast.cluster.redis`, step for step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
)

_Key = tuple[str, str]  # (app id, channel)


@dataclass
class _Node:
    last_beat: float
    info: dict[str, Any]
    subs: dict[_Key, int] = field(default_factory=dict)  # this node's subscription counts
    members: set[tuple[str, str, str]] = field(default_factory=set)  # (app, channel, user)


@dataclass
class MemoryCluster:
    """The shared state: what Redis holds for the Redis registry."""

    nodes: dict[str, _Node] = field(default_factory=dict)
    subs: dict[str, dict[str, int]] = field(default_factory=dict)  # app -> channel -> count
    # (app, channel) -> user -> [number of nodes holding the user, user_info], join order
    members: dict[_Key, dict[str, list[Any]]] = field(default_factory=dict)


class MemoryRegistry:
    shared = False

    def __init__(self, cluster: MemoryCluster, node_id: str) -> None:
        self.cluster = cluster
        self.node_id = node_id

    def _me(self) -> _Node | None:
        return self.cluster.nodes.get(self.node_id)

    async def register(self, now: float, info: dict[str, Any]) -> None:
        node = self._me()
        if node is None:
            self.cluster.nodes[self.node_id] = _Node(now, dict(info))
        else:
            node.last_beat, node.info = now, dict(info)

    async def heartbeat(self, now: float, info: dict[str, Any]) -> bool:
        node = self._me()
        if node is None:
            return False
        node.last_beat, node.info = now, dict(info)
        return True

    async def count(self, app_id: str, channel: str, delta: int) -> int:
        node = self._me()
        if node is None:
            return STALE
        key = (app_id, channel)
        mine = node.subs.get(key, 0) + delta
        if mine < 0:
            return 0  # more leaves than joins: nothing of ours is left to remove
        if mine == 0:
            node.subs.pop(key, None)
        else:
            node.subs[key] = mine
        counts = self.cluster.subs.setdefault(app_id, {})
        total = counts.get(channel, 0) + delta
        if total <= 0:
            counts.pop(channel, None)
            if not counts:
                del self.cluster.subs[app_id]
            return VACATED if delta < 0 else 0
        counts[channel] = total
        return OCCUPIED if total == delta and delta > 0 else 0

    async def join(
        self,
        app_id: str,
        channel: str,
        user_id: str,
        user_info: Any,
        first_local: bool,
        max_members: int,
    ) -> Joined:
        node = self._me()
        if node is None:
            return Joined(GONE)
        key = (app_id, channel)
        members = self.cluster.members.get(key, {})
        result = PRESENT
        if first_local:
            if user_id not in members and len(members) >= max_members:
                return Joined(FULL)
            mark = (app_id, channel, user_id)
            if mark not in node.members:
                node.members.add(mark)
                members = self.cluster.members.setdefault(key, members)
                entry = members.get(user_id)
                if entry is None:
                    members[user_id] = [1, user_info]
                    result = ADDED
                else:
                    entry[0] += 1
        return Joined(result, {uid: entry[1] for uid, entry in members.items()})

    async def leave(self, app_id: str, channel: str, user_id: str) -> bool:
        node = self._me()
        mark = (app_id, channel, user_id)
        if node is None or mark not in node.members:
            return False
        node.members.discard(mark)
        return self._drop_member(app_id, channel, user_id)

    def _drop_member(self, app_id: str, channel: str, user_id: str) -> bool:
        key = (app_id, channel)
        members = self.cluster.members.get(key, {})
        entry = members.get(user_id)
        if entry is None:
            return False
        entry[0] -= 1
        if entry[0] > 0:
            return False
        del members[user_id]
        if not members:
            self.cluster.members.pop(key, None)
        return True

    async def channels(self, app_id: str) -> dict[str, int]:
        return dict(self.cluster.subs.get(app_id, {}))

    async def subscription_count(self, app_id: str, channel: str) -> int:
        return self.cluster.subs.get(app_id, {}).get(channel, 0)

    async def members(self, app_id: str, channel: str) -> dict[str, Any]:
        members = self.cluster.members.get((app_id, channel), {})
        return {uid: entry[1] for uid, entry in members.items()}

    async def user_count(self, app_id: str, channel: str) -> int:
        return len(self.cluster.members.get((app_id, channel), {}))

    async def reap(self, cutoff: float, node_id: str | None = None) -> Reaped:
        if node_id is not None:
            dead = [node_id] if node_id in self.cluster.nodes else []
        else:
            dead = [nid for nid, n in self.cluster.nodes.items() if n.last_beat < cutoff]
        out: list[Departure] = []
        for nid in dead:
            node = self.cluster.nodes.pop(nid)
            for (app_id, channel), mine in node.subs.items():
                counts = self.cluster.subs.get(app_id, {})
                total = counts.get(channel, 0) - mine
                if total <= 0:
                    counts.pop(channel, None)
                    if not counts:
                        self.cluster.subs.pop(app_id, None)
                    out.append(Departure(app_id, channel))
                else:
                    counts[channel] = total
            for app_id, channel, user_id in sorted(node.members):
                if self._drop_member(app_id, channel, user_id):
                    out.append(Departure(app_id, channel, user_id))
        return Reaped(dead, out)

    async def nodes(self) -> list[NodeInfo]:
        return [
            NodeInfo(nid, node.last_beat, dict(node.info))
            for nid, node in sorted(self.cluster.nodes.items())
        ]

    async def close(self) -> None:
        return None
