"""A SockJS server (protocol 0.3) for STOMP on the HTTP port, as ASGI.

Why not a library: the maintained Python SockJS servers are bound to other frameworks
(``sockjs`` 0.13 to aiohttp's web application and request types, ``sockjs-tornado`` to
Tornado); ordercast's HTTP port is FastAPI/Starlette on uvicorn, so using one would mean a
second HTTP server in the process. The protocol part needed here is small: framing
(``o``, ``h``, ``a[…]``, ``c[code,"reason"]``), sessions, and the transports sockjs-client
tries in Node and in browsers: ``websocket``, ``xhr_streaming`` and ``xhr`` (polling) with
``xhr_send``. Not served: ``eventsource``, ``htmlfile``, ``jsonp`` and the iframe transports
(sockjs-client skips them when these answer 404).

Each SockJS session owns one :class:`~ordercast.gateway.asgi_stomp.HttpStompConnection`:
the messages a client sends are STOMP data for that connection; what the connection writes
goes out as SockJS message frames (several queued messages in one ``a[…]`` frame). A
session is bound to the client address that opened it, gets at most one receiving request
at a time (another gets ``c[2010,…]``), and ends ``disconnect_delay`` seconds after its last
receiving request left, or when the STOMP connection closes (``c[3000,"Go away!"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Final

from ordercast.gateway.asgi_stomp import (
    AsgiOutbox,
    HttpStompConnection,
    Receive,
    Scope,
    Send,
    peer_of,
    run_pair,
)
from ordercast.gateway.stomp import StompGateway

__all__ = ["SockJs"]

log = logging.getLogger("ordercast.gateway.sockjs")

HEARTBEAT_SECONDS: Final = 25.0
DISCONNECT_DELAY: Final = 5.0
STREAMING_LIMIT: Final = 128 * 1024
MAX_SEND_BYTES: Final = 256 * 1024
MAX_SESSIONS: Final = 100_000
_SESSION_PATH: Final = re.compile(r"/(?P<server>[^/.]+)/(?P<session>[^/.]+)/(?P<transport>[a-z_]+)")
_NO_CACHE: Final = (
    b"cache-control",
    b"no-store, no-cache, no-transform, must-revalidate, max-age=0",
)
_GO_AWAY: Final = 'c[3000,"Go away!"]'
_ANOTHER: Final = 'c[2010,"Another connection still open"]'


def message_frame(messages: list[bytes]) -> str:
    """``a[…]`` with every non-ASCII character escaped (SockJS asks for some ranges to be;
    escaping all is the simple safe superset)."""
    return "a" + json.dumps([m.decode("utf-8", "replace") for m in messages], ensure_ascii=True)


def parse_messages(raw: bytes | str) -> list[str] | None:
    """A client's SockJS payload: a JSON array of strings (or one string); None if not."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


class Session:
    """One SockJS session and its STOMP connection."""

    def __init__(self, owner: SockJs, session_id: str, peer: str) -> None:
        self.owner = owner
        self.id = session_id
        self.peer = peer
        self.outbox = AsgiOutbox(peer)
        self.conn = HttpStompConnection(owner.gateway, self.outbox)
        self.opened = False  # the "o" frame went out
        self.receiving = False
        self.ended = False
        self._expiry: asyncio.TimerHandle | None = None
        self.touch()

    def frames(self) -> list[str]:
        """What a receiver should write now: queued messages, then the close frame."""
        out: list[str] = []
        items = self.outbox.drain()
        if items:
            out.append(message_frame(items))
        if self.outbox.closing or self.outbox.is_close_frame_sent:
            out.append(_GO_AWAY)
            self.end()
        return out

    def attach(self) -> None:
        self.receiving = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def detach(self) -> None:
        self.receiving = False
        self.touch()

    def touch(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(self.owner.disconnect_delay, self._expired)

    def _expired(self) -> None:
        self._expiry = None
        if not self.receiving:
            self.end()

    def receive(self, messages: list[str]) -> None:
        for text in messages:
            self.conn.receive(text.encode())

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self.owner.sessions.pop(self.id, None)
        self.conn.lost()


class SockJs:
    """The SockJS endpoints under one gateway (``/ws/…`` and ``/websocket/…``)."""

    def __init__(
        self,
        gateway: StompGateway,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        disconnect_delay: float = DISCONNECT_DELAY,
        streaming_limit: int = STREAMING_LIMIT,
    ) -> None:
        self.gateway = gateway
        self.heartbeat = heartbeat
        self.disconnect_delay = disconnect_delay
        self.streaming_limit = streaming_limit
        self.sessions: dict[str, Session] = {}

    # -- dispatch -------------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send, rest: str) -> None:
        method = scope.get("method", "GET")
        if scope["type"] == "websocket":
            found = _SESSION_PATH.fullmatch(rest)
            if found and found["transport"] == "websocket":
                await self._websocket(scope, receive, send, found["session"])
                return
            await send({"type": "websocket.close", "code": 1008})  # answered 403 by the server
            return
        if rest in ("", "/") and method == "GET":
            await _respond(send, 200, b"Welcome to SockJS!\n", b"text/plain; charset=UTF-8")
            return
        if rest == "/info":
            if method == "OPTIONS":
                await _preflight(scope, send, b"OPTIONS, GET")
                return
            if method == "GET":
                await self._info(scope, send)
                return
            await _respond(send, 405, b"GET or OPTIONS\n", extra=[(b"allow", b"GET, OPTIONS")])
            return
        found = _SESSION_PATH.fullmatch(rest)
        transport = found["transport"] if found else None
        handlers: dict[str, Callable[[Scope, Receive, Send, str], Awaitable[None]]] = {
            "xhr": self._xhr_polling,
            "xhr_streaming": self._xhr_streaming,
            "xhr_send": self._xhr_send,
        }
        if found is None or transport not in handlers:
            await _respond(send, 404, b"Not found\n")
            return
        if method == "OPTIONS":
            await _preflight(scope, send, b"OPTIONS, POST")
            return
        if method != "POST":
            await _respond(send, 405, b"POST or OPTIONS\n", extra=[(b"allow", b"OPTIONS, POST")])
            return
        await handlers[transport](scope, receive, send, found["session"])

    def _session(self, session_id: str, scope: Scope, create: bool) -> Session | None:
        peer = peer_of(scope)
        session = self.sessions.get(session_id)
        if session is not None:
            # A session answers only the address that opened it.
            return session if session.peer == peer else None
        if not create or len(self.sessions) >= MAX_SESSIONS:
            return None
        session = Session(self, session_id, peer)
        self.sessions[session_id] = session
        return session

    async def _next(self, session: Session) -> list[str]:
        """The frames to write next on a streaming receiver: what is queued, else ``h``
        after ``heartbeat`` seconds of silence."""
        outbox = session.outbox
        while True:
            outbox.wake.clear()
            frames = session.frames()
            if frames or session.ended:
                return frames
            try:
                await asyncio.wait_for(outbox.wake.wait(), self.heartbeat)
            except TimeoutError:
                return ["h"]

    # -- endpoints ------------------------------------------------------------------------------

    async def _info(self, scope: Scope, send: Send) -> None:
        body = {
            "websocket": True,
            "origins": ["*:*"],
            "cookie_needed": False,
            "entropy": secrets.randbits(31),
        }
        await _respond(
            send,
            200,
            json.dumps(body).encode(),
            b"application/json; charset=UTF-8",
            extra=[_NO_CACHE, *_cors(scope)],
        )

    async def _xhr_send(self, scope: Scope, receive: Receive, send: Send, sid: str) -> None:
        session = self._session(sid, scope, create=False)
        if session is None or session.ended:
            await _respond(send, 404, b"Not found\n", extra=_cors(scope))
            return
        raw = await _read_body(receive, MAX_SEND_BYTES)
        messages = parse_messages(raw) if raw is not None else None
        if messages is None:
            detail = b"Payload expected.\n" if not raw else b"Broken JSON encoding.\n"
            await _respond(send, 400, detail, extra=_cors(scope))
            return
        session.receive(messages)
        session.touch()
        await _respond(
            send, 204, b"", b"text/plain; charset=UTF-8", extra=[_NO_CACHE, *_cors(scope)]
        )

    async def _xhr_polling(self, scope: Scope, receive: Receive, send: Send, sid: str) -> None:
        session = self._session(sid, scope, create=True)
        headers = [_NO_CACHE, *_cors(scope)]
        ctype = b"application/javascript; charset=UTF-8"
        if session is None:
            await _respond(send, 404, b"Not found\n", extra=_cors(scope))
            return
        if not session.opened:
            session.opened = True
            await _respond(send, 200, b"o\n", ctype, extra=headers)
            return
        if session.receiving:
            await _respond(send, 200, (_ANOTHER + "\n").encode(), ctype, extra=headers)
            return
        session.attach()
        try:
            session.outbox.wake.clear()
            frames = session.frames()
            if not frames:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(session.outbox.wake.wait(), self.heartbeat)
                frames = session.frames() or ["h"]
            await _respond(send, 200, "".join(f + "\n" for f in frames).encode(), ctype, headers)
        finally:
            session.detach()

    async def _xhr_streaming(self, scope: Scope, receive: Receive, send: Send, sid: str) -> None:
        session = self._session(sid, scope, create=True)
        if session is None:
            await _respond(send, 404, b"Not found\n", extra=_cors(scope))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/javascript; charset=UTF-8"),
                    _NO_CACHE,
                    *_cors(scope),
                ],
            }
        )
        if session.receiving:
            await _chunk(send, b"h" * 2048 + b"\n")
            await _chunk(send, (_ANOTHER + "\n").encode(), more=False)
            return
        session.attach()
        sent = 0

        async def write() -> None:
            nonlocal sent
            # A prelude of 2048 'h' so that browsers start handing the stream to the script.
            await _chunk(send, b"h" * 2048 + b"\n")
            if not session.opened:
                session.opened = True
                await _chunk(send, b"o\n")
            while not session.ended:
                frames = await self._next(session)
                for frame in frames:
                    data = (frame + "\n").encode()
                    await _chunk(send, data)
                    sent += len(data)
                if sent >= self.streaming_limit:
                    break  # the client opens the next request
            await _chunk(send, b"", more=False)

        try:
            await _until_disconnect(receive, write())
        finally:
            session.detach()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, sid: str) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        session = self._session(sid, scope, create=True)
        if session is None or session.opened:
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        session.opened = True
        session.attach()
        await send({"type": "websocket.send", "text": "o"})
        outbox = session.outbox

        async def write() -> None:
            while not session.ended:
                for frame in await self._next(session):
                    await send({"type": "websocket.send", "text": frame})
            await send({"type": "websocket.close", "code": 3000})

        async def read() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message["type"] != "websocket.receive":
                    continue
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes") or b""
                messages = parse_messages(raw)
                if messages is None:  # broken framing: end the session, as SockJS does
                    session.end()
                    return
                session.receive(messages)

        try:
            await run_pair(read(), write(), outbox, self.gateway.config.close_timeout)
        finally:
            # The websocket transport's session ends with its socket.
            session.end()


# -- HTTP helpers --------------------------------------------------------------------------------


def _cors(scope: Scope) -> list[tuple[bytes, bytes]]:
    origin = _header(scope, b"origin")
    if origin and origin != b"null":
        return [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
        ]
    return [(b"access-control-allow-origin", b"*")]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


async def _preflight(scope: Scope, send: Send, methods: bytes) -> None:
    headers = [
        (b"access-control-allow-methods", methods),
        (b"access-control-max-age", b"31536000"),
        (b"cache-control", b"public, max-age=31536000"),
        *_cors(scope),
    ]
    requested = _header(scope, b"access-control-request-headers")
    if requested:
        headers.append((b"access-control-allow-headers", requested))
    await _respond(send, 204, b"", extra=headers)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"text/plain; charset=UTF-8",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), *(extra or [])]
    if status != 204:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body if status != 204 else b""})


async def _chunk(send: Send, data: bytes, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            return None
        chunks.append(body)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _until_disconnect(receive: Receive, work: Awaitable[None]) -> None:
    """Run ``work`` (a streaming response) until it ends or the client disconnects."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, watcher):
            t.cancel()
        for t in (task, watcher):
            with contextlib.suppress(BaseException):
                await t
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.error("SockJS streaming failed", exc_info=task.exception())
