"""Presence bookkeeping shared by every connection of a gateway (pure, not thread-safe).

Members are users, not sockets: a user with three tabs open is one member. ``member_added``
is due only when a user's *first* socket joins a channel, ``member_removed`` only when their
*last* socket leaves. The roster is node-local; a multi-node gateway must aggregate.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ordercast.protocols.pusher.auth import PresenceMember

__all__ = ["DEFAULT_MAX_MEMBERS", "JoinResult", "PresenceRoster"]

DEFAULT_MAX_MEMBERS: Final = 100


class JoinResult(enum.Enum):
    """Outcome of :meth:`PresenceRoster.join`."""

    ADDED = "added"  # first socket of this user: broadcast member_added to the others
    ALREADY_PRESENT = "already_present"  # user already a member via another socket: no broadcast
    FULL = "full"  # channel has max_members distinct users: refuse the subscription


@dataclass(slots=True)
class _Member:
    user_info: Any
    sockets: set[str] = field(default_factory=set)


class PresenceRoster:
    """Members of every presence channel, by user id, with the sockets each user holds."""

    def __init__(self, max_members: int = DEFAULT_MAX_MEMBERS) -> None:
        self.max_members = max_members
        self._channels: dict[str, dict[str, _Member]] = {}
        self._sockets: dict[str, dict[str, str]] = {}  # socket_id -> {channel: user_id}

    def join(self, channel: str, socket_id: str, member: PresenceMember) -> JoinResult:
        """Add ``socket_id`` as ``member`` to ``channel``.

        The first socket's ``user_info`` is the one reported. A socket already in the channel
        is left as it is (``ALREADY_PRESENT``).
        """
        joined = self._sockets.get(socket_id, {})
        if channel in joined:
            return JoinResult.ALREADY_PRESENT
        members = self._channels.get(channel, {})
        existing = members.get(member.user_id)
        if existing is None and len(members) >= self.max_members:
            return JoinResult.FULL
        members = self._channels.setdefault(channel, members)
        if existing is None:
            existing = members[member.user_id] = _Member(member.user_info)
            result = JoinResult.ADDED
        else:
            result = JoinResult.ALREADY_PRESENT
        existing.sockets.add(socket_id)
        self._sockets.setdefault(socket_id, {})[channel] = member.user_id
        return result

    def leave(self, channel: str, socket_id: str) -> str | None:
        """Remove ``socket_id`` from ``channel``; return the user id if it was their last socket."""
        joined = self._sockets.get(socket_id)
        if joined is None or channel not in joined:
            return None
        user_id = joined.pop(channel)
        if not joined:
            del self._sockets[socket_id]
        members = self._channels[channel]
        entry = members[user_id]
        entry.sockets.discard(socket_id)
        if entry.sockets:
            return None
        del members[user_id]
        if not members:
            del self._channels[channel]
        return user_id

    def leave_all(self, socket_id: str) -> list[tuple[str, str]]:
        """Remove a closed socket everywhere; ``(channel, user_id)`` pairs due a member_removed."""
        removed = []
        for channel in list(self._sockets.get(socket_id, {})):
            user_id = self.leave(channel, socket_id)
            if user_id is not None:
                removed.append((channel, user_id))
        return removed

    def members(self, channel: str) -> Mapping[str, Any]:
        """``user_id -> user_info`` for the channel, in join order (for subscription_succeeded)."""
        return {user_id: m.user_info for user_id, m in self._channels.get(channel, {}).items()}

    def user_ids(self, channel: str) -> list[str]:
        """Distinct user ids in the channel (``GET …/users``)."""
        return list(self._channels.get(channel, {}))

    def user_count(self, channel: str) -> int:
        """Distinct users (the ``user_count`` attribute)."""
        return len(self._channels.get(channel, {}))

    def socket_count(self, channel: str) -> int:
        """Connections subscribed (the ``subscription_count`` attribute)."""
        return sum(len(m.sockets) for m in self._channels.get(channel, {}).values())

    def channels(self) -> list[str]:
        """Occupied presence channels."""
        return list(self._channels)

    def user_of(self, channel: str, socket_id: str) -> str | None:
        """The user id ``socket_id`` joined ``channel`` as, if any."""
        return self._sockets.get(socket_id, {}).get(channel)
