"""One Pusher-protocol socket at ``/app/{key}``, and the Pusher side of the fan-out.

:class:`PusherConnection` is the picows listener: text frames go to its sans-I/O
:class:`~ordercast.protocols.pusher.PusherSession` (queued until the socket's app is known),
the session's output and close request come back out. What happens to a socket (connected,
input handled by its session, gone) is reported to its :class:`SocketEvents`: the gateway
(:mod:`ordercast.gateway.pusher.gateway`), which opens the session and hands the session's
events to the registry.

:class:`PusherFanout` is the fan-out engine (:mod:`ordercast.gateway.fanout`) with the Pusher
writers: one frame with one ``transport.send`` per socket (a frame may skip one socket: a
client event is not echoed to its sender), a run of frames for the same sockets as one raw
write per socket. A socket whose write buffer is past ``max_buffer`` once it has paused
writing is closed with 4100 (over capacity: pusher-js reconnects after 1 s and catches up
by ``seq``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final, Protocol

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from ordercast.gateway.fanout import Fanout, SlowConsumers, close_transport, frame_blob
from ordercast.protocols.pusher import CloseCode, PusherSession

__all__ = ["DEFAULT_MAX_BUFFER", "PusherConnection", "PusherFanout", "SocketEvents", "Targets"]

TEXT: Final = WSMsgType.TEXT
#: Past this many bytes waiting in a socket's write buffer, the socket is closed with 4100.
DEFAULT_MAX_BUFFER: Final = 1024 * 1024


class SocketEvents(Protocol):
    """What a socket reports to the gateway."""

    def connected(self, conn: PusherConnection) -> None: ...

    def received(self, conn: PusherConnection) -> None:
        """The session took input: handle its events, write its output."""

    def disconnected(self, conn: PusherConnection) -> None: ...


class PusherConnection(WSListener):
    """One socket. Frames before the app is known are queued."""

    def __init__(
        self, events: SocketEvents, out: PusherFanout, socket_id: str, target: str
    ) -> None:
        self.events = events
        self.out = out
        self.target = target
        self.socket_id = socket_id
        self.transport: WSTransport | None = None
        self.raw: asyncio.Transport | None = None
        self.session: PusherSession | None = None
        #: The app of ``/app/{key}`` once its session is open (the registry's app id).
        self.app_id: str | None = None
        self.pending: list[str] | None = []
        self.paused = False
        self.dead = False
        self.opened_at = 0.0

    # -- picows callbacks -----------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        self.events.connected(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == TEXT:
            try:
                text = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self.close(1007, "invalid UTF-8")
                return
            if self.session is None:
                if self.pending is not None and len(self.pending) < 100:
                    self.pending.append(text)
                return
            self.session.receive_data(text, time.monotonic())
            self.events.received(self)
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind in (WSMsgType.PING, WSMsgType.PONG):
            if self.session is not None:
                self.session.note_activity(time.monotonic())
        elif kind == WSMsgType.BINARY and self.session is not None:
            self.session.send_error("Binary frames are not supported")
            self.flush()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.dead = True
        self.events.disconnected(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    # -- output ----------------------------------------------------------------------

    def send_text(self, text: str | bytes) -> None:
        if not self.dead and self.transport is not None:
            if self.out.pending:
                self.out.flush()  # keep this socket's order of messages
            self.transport.send(TEXT, text)

    def flush(self) -> None:
        """Write what the session queued; perform its close request."""
        session = self.session
        if session is None:
            return
        for text in session.data_to_send():
            self.send_text(text)
        if session.close_request is not None and not self.dead:
            self.close(session.close_request.code, session.close_request.reason)

    def close(self, code: int, reason: str) -> None:
        if self.dead or self.transport is None:
            return
        self.dead = True
        close_transport(self.transport, code, reason)
        raw = self.raw
        if raw is not None:
            # A peer that never reads would keep the socket forever: abort after a grace.
            asyncio.get_running_loop().call_later(2.0, _abort, raw)
        # The registry forgets us now (on_ws_disconnected may come later).
        self.events.disconnected(self)


def _abort(raw: asyncio.Transport) -> None:
    if not raw.is_closing():
        raw.abort()
    else:
        with contextlib.suppress(Exception):
            raw.abort()


#: A channel's subscribers as the fan-out queues them (a snapshot, safe to iterate).
Targets = tuple[PusherConnection, ...]


class PusherFanout(Fanout[Targets, bytes, PusherConnection | None]):
    """The fan-out engine with the Pusher writers (the hot loops: per socket, a liveness
    check, the slow-consumer check once the socket has paused writing, one write)."""

    __slots__ = ("slow", "writes")

    def __init__(self, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        super().__init__(self._send_each, self._write_each)
        self.slow = SlowConsumers(max_buffer)
        self.writes = 0  # socket writes by the fan-out (coalesced runs count once)

    def _over_capacity(self, conn: PusherConnection) -> bool:
        if self.slow.too_slow(conn.raw):
            conn.close(CloseCode.OVER_CAPACITY, "Over capacity: the client reads too slowly")
            return True
        return False

    def _send_each(self, targets: Targets, frame: bytes, exclude: PusherConnection | None) -> None:
        """One frame: one ``transport.send`` per socket (``exclude`` skipped)."""
        for conn in targets:
            if conn.dead or conn is exclude:
                continue
            if conn.paused and self._over_capacity(conn):
                continue
            conn.transport.send(TEXT, frame)  # type: ignore[union-attr]
        self.writes += len(targets)

    def _write_each(
        self, targets: Targets, run: list[tuple[Targets, bytes, PusherConnection | None, bool]]
    ) -> None:
        """A run of frames to the same sockets: one raw write of the consecutive WebSocket
        frames per socket."""
        blob = frame_blob([item[1] for item in run])
        for conn in targets:
            if conn.dead:
                continue
            if conn.paused and self._over_capacity(conn):
                continue
            conn.raw.write(blob)  # type: ignore[union-attr]
        self.writes += len(targets)
