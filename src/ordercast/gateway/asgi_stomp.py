"""STOMP connections served through ASGI (the HTTP port): the transport adapter.

A :class:`HttpStompConnection` is the gateway's
:class:`~ordercast.gateway.stomp.StompConnection` (the same sans-I/O session, authorization,
destination registry and fan-out) whose transport is an :class:`AsgiOutbox` instead of
picows' — the subset of ``WSTransport`` the connection uses: ``send``, ``send_close``,
``disconnect``, and a write-buffer size (the bytes queued and not yet handed to the server)
for the slow-consumer check. A writer task drains the outbox to the ASGI ``send``: WebSocket
messages here (:func:`serve_websocket`), SockJS frames in :mod:`ordercast.gateway.sockjs`.
The ASGI middleware that routes to both is :mod:`ordercast.gateway.stomp_http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ordercast.gateway.stomp import StompConnection, StompGateway
from ordercast.protocols.stomp import select_subprotocol

__all__ = ["AsgiOutbox", "HttpStompConnection", "peer_of", "run_pair", "serve_websocket"]

log = logging.getLogger("ordercast.gateway.asgi_stomp")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiOutbox:
    """What :class:`StompConnection` writes to, for a connection served through ASGI.

    Messages are queued (``send``) and taken by a writer task (``drain``); ``size`` is what
    is queued, the connection's "write buffer". ``send_close`` / ``disconnect`` mark the end:
    the writer sends what is queued, then closes."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.queue: deque[bytes] = deque()
        self.size = 0
        self.wake = asyncio.Event()
        self.is_close_frame_sent = False
        self.close_code = 1000
        self.closing = False
        self.aborted = False
        self.underlying_transport = self

    # -- the WSTransport subset ----------------------------------------------------------------

    def send(self, _msg_type: object, data: bytes) -> None:
        if self.closing:
            return
        self.queue.append(bytes(data))
        self.size += len(data)
        self.wake.set()

    def send_close(self, code: int = 1000, _message: bytes = b"") -> None:
        self.is_close_frame_sent = True
        self.close_code = int(code)
        self.wake.set()

    def disconnect(self, graceful: bool = True) -> None:
        self.closing = True
        if not graceful:
            self.aborted = True
        self.wake.set()

    # -- asyncio transport subset (slow-consumer checks, peer address) ---------------------------

    def get_write_buffer_size(self) -> int:
        return self.size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)  # never above the gateway's bound: nothing to lower

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.peer, 0) if name == "peername" else default

    # -- the writer's side ---------------------------------------------------------------------

    def drain(self) -> list[bytes]:
        items = list(self.queue)
        self.queue.clear()
        self.size = 0
        return items

    @property
    def finished(self) -> bool:
        """Closed by the server and nothing left to write."""
        return (self.closing or self.is_close_frame_sent) and not self.queue


class HttpStompConnection(StompConnection):
    """A STOMP connection whose transport is an :class:`AsgiOutbox`."""

    raw_frames = False

    def __init__(self, gateway: StompGateway, outbox: AsgiOutbox) -> None:
        super().__init__(gateway)
        self.outbox = outbox
        self.on_ws_connected(outbox)  # type: ignore[arg-type]  # the WSTransport subset

    def lost(self) -> None:
        """The client went away (or the SockJS session expired)."""
        self.on_ws_disconnected(self.outbox)  # type: ignore[arg-type]


def peer_of(scope: Scope) -> str:
    client = scope.get("client")
    if client:
        return str(client[0])
    return "unknown"


async def serve_websocket(
    gateway: StompGateway, scope: Scope, receive: Receive, send: Send
) -> None:
    """Plain STOMP over WebSocket: one STOMP frame per WebSocket message."""
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    subprotocol = select_subprotocol(scope.get("subprotocols") or ())
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    outbox = AsgiOutbox(peer_of(scope))
    conn = HttpStompConnection(gateway, outbox)

    async def write() -> None:
        while True:
            await outbox.wake.wait()
            outbox.wake.clear()
            for data in outbox.drain():
                await send({"type": "websocket.send", "text": data.decode("utf-8", "replace")})
            if outbox.finished:
                await send({"type": "websocket.close", "code": outbox.close_code})
                return

    async def read() -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes")
                if data is None:
                    data = (message.get("text") or "").encode()
                conn.receive(data)
            elif kind == "websocket.disconnect":
                return

    await run_pair(read(), write(), outbox, gateway.config.close_timeout)
    conn.lost()


async def run_pair(
    read: Awaitable[None], write: Awaitable[None], outbox: AsgiOutbox, close_timeout: float
) -> None:
    """Run a connection's reader and writer: done when the client leaves, or when the server
    closed and the client did not follow within ``close_timeout`` (or at once on abort)."""
    reader = asyncio.ensure_future(read)
    writer = asyncio.ensure_future(write)
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            return
        # The server closed: give the client a moment to answer the close.
        if not outbox.aborted:
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(reader), close_timeout)
    except Exception:
        log.exception("STOMP-over-HTTP connection failed")
    finally:
        for task in (reader, writer):
            task.cancel()
        for task in (reader, writer):
            with contextlib.suppress(BaseException):
                await task
