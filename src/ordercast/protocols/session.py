"""The vocabulary every sans-I/O protocol session speaks (Pusher, STOMP), as in websockets.

An adapter owns the socket and the clock and drives any session the same way::

    session.receive_data(data, now)          # one received WebSocket message; never raises
    for event in session.events_received():  # typed, already validated; act on each
        ...
    for item in session.data_to_send():      # each item is one WebSocket message
        send(item)
    if (close := session.close_request) is not None:
        close the socket with close.code (and close.reason)
    ... at session.next_deadline():
    session.on_timer(now)

What differs stays in each protocol: its events, its decisions (``subscription_succeeded``,
``accept_connect``, ...) and how it tells the client why it is closing (a ``pusher:error``
with a 4xxx code, a STOMP ERROR frame). :class:`ProtocolSession` is the structural interface;
``PusherSession`` and ``StompSession`` satisfy it (mypy checks this in each module).

Pure: standard library only.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = ["MAX_CLOSE_REASON_BYTES", "CloseRequest", "ProtocolSession", "WebSocketCloseCode"]

#: A close frame's reason is at most 123 UTF-8 bytes (RFC 6455, 5.5: 125 minus the code).
MAX_CLOSE_REASON_BYTES = 123


class WebSocketCloseCode(enum.IntEnum):
    """The RFC 6455 close codes the sessions ask for (protocol codes such as Pusher's 4xxx
    live with their protocol)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """The WebSocket close a session asks for, to perform after sending :meth:`data_to_send`.

    ``code`` is the close frame's code; ``reason`` its reason text (at most
    :data:`MAX_CLOSE_REASON_BYTES` UTF-8 bytes; empty when the protocol says why in its own
    frame, as STOMP does with ERROR).
    """

    code: int
    reason: str = ""

    @classmethod
    def truncated(cls, code: int, reason: str) -> CloseRequest:
        """A request whose reason is cut (on a character boundary) to fit a close frame."""
        short = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
        return cls(int(code), short)


DataIn = TypeVar("DataIn", contravariant=True)
EventT = TypeVar("EventT", covariant=True)
DataOut = TypeVar("DataOut", covariant=True)


class ProtocolSession(Protocol[DataIn, EventT, DataOut]):
    """What an adapter may call on any protocol session. Times are seconds on a monotonic
    clock, always passed in."""

    def receive_data(self, data: DataIn, now: float) -> None:
        """Handle one received WebSocket message. Never raises."""

    def events_received(self) -> Sequence[EventT]:
        """Drain the events the adapter must act on, in order."""

    def data_to_send(self) -> Sequence[DataOut]:
        """Drain the outgoing data; each item is one WebSocket message."""

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must next be called, or None if no timer is needed."""

    def on_timer(self, now: float) -> None:
        """Run the timers that are due at ``now``."""

    @property
    def close_request(self) -> CloseRequest | None:
        """None while the connection should stay open; once set, the close to perform after
        flushing :meth:`data_to_send` (it never changes again)."""
