"""STOMP on the HTTP port: plain WebSocket and SockJS at ``/ws`` and ``/websocket``.

Ordering Stack's client libraries connect STOMP to the same origin as the REST API
(``{BASE_URL}/ws``, ``wss://{host}/websocket``), plain WebSocket where the runtime has one and
SockJS (sockjs-client) where it has not. This ASGI middleware, outermost in the HTTP app,
serves those paths; everything else goes to the API. The gateway port keeps its own plain
WebSocket STOMP (picows) unchanged.

Both ways reuse the gateway's STOMP machinery: each connection is a
:class:`~ordercast.gateway.stomp.StompConnection` (the same sans-I/O session, the same
authorization, the same destination registry and fan-out) whose transport is an
:class:`AsgiOutbox` instead of picows' — the subset of ``WSTransport`` the connection uses:
``send``, ``send_close``, ``disconnect``, and a write-buffer size (the bytes queued and not
yet handed to the server) for the slow-consumer check. A writer task drains the outbox to
the ASGI ``send``: WebSocket messages, or SockJS frames (:mod:`ordercast.gateway.sockjs`).

Paths (``P`` = ``/ws`` or ``/websocket``):

* WebSocket ``P`` and ``P/websocket``: STOMP frames as WebSocket messages (the latter is
  SockJS's "raw WebSocket" URL).
* SockJS ``P/info``, ``P/{server}/{session}/websocket``, ``…/xhr_streaming``, ``…/xhr``,
  ``…/xhr_send`` (see :mod:`ordercast.gateway.sockjs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ordercast.gateway.stomp import StompConnection, StompGateway, install
from ordercast.protocols.stomp import select_subprotocol

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ordercast.runtime import Runtime

__all__ = ["PREFIXES", "AsgiOutbox", "HttpStompConnection", "StompOverHttp"]

log = logging.getLogger("ordercast.gateway.stomp_http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIXES = ("/ws", "/websocket")


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


class StompOverHttp:
    """ASGI middleware: STOMP (WebSocket, SockJS) at ``/ws`` and ``/websocket``; every other
    request goes to ``app``."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._gateway: StompGateway | None = None
        self._sockjs: Any = None

    def _prefix(self, path: str) -> str | None:
        for prefix in PREFIXES:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix
        return None

    async def _ready(self) -> tuple[StompGateway, Any]:
        from ordercast.gateway.sockjs import SockJs

        runtime: Runtime = self.api.state.runtime
        if self._gateway is None or self._gateway.runtime is not runtime:
            self._gateway = install(runtime)
            self._sockjs = SockJs(self._gateway)
        if not runtime.hub.running:  # an app served without `ordercast run` (tests)
            await runtime.hub.start()
        return self._gateway, self._sockjs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path = scope.get("path", "")
        prefix = self._prefix(path) if kind in ("http", "websocket") else None
        if prefix is None:
            await self.app(scope, receive, send)
            return
        gateway, sockjs = await self._ready()
        rest = path[len(prefix) :]
        if kind == "websocket" and rest in ("", "/", "/websocket"):
            await serve_websocket(gateway, scope, receive, send)
            return
        await sockjs.handle(scope, receive, send, rest)
