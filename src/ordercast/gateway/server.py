"""The WebSocket gateway: one picows server, routing each upgrade request by path.

One listening socket (default port 6001) serves every WebSocket protocol ordercast speaks.
The Pusher gateway (:mod:`ordercast.gateway.pusher`) owns ``/app/{key}``; the STOMP gateway
owns ``/ws`` and ``/websocket``; the Doshii gateway ``/app/socket``.
:meth:`ordercast.runtime.Runtime.open` builds the :class:`GatewayServer` (``runtime.gateway``)
and installs the gateways on it (``gateway.install(server)``: routes, hub consumer, hooks),
before it starts.

How to register a route
=======================

::

    from ordercast.gateway.server import GatewayServer, UpgradeRequest, accept, reject

    def stomp_factory(request: UpgradeRequest, match: re.Match[str] | None) -> Upgrade:
        # Runs inside picows' handshake callback: synchronous, must not block or raise
        # (an exception becomes a 500 answer and is logged).
        proto = request.choose_subprotocol(("v12.stomp", "v11.stomp", "v10.stomp"))
        if proto is None and request.subprotocols:
            return reject(400, "unsupported STOMP subprotocol")
        return accept(MyStompListener(...), subprotocol=proto)   # -> 101

    runtime.gateway.add_route("/ws", stomp_factory)               # exact path
    runtime.gateway.add_route("/websocket", stomp_factory)
    runtime.gateway.add_route(re.compile(r"/app/(?P<key>[^/]+)"), pusher_factory)  # fullmatch

``matcher`` is an exact path string, a compiled regex (``fullmatch`` against the path
without the query string; the match is passed to the factory), or a callable
``(path) -> bool``. Routes are tried in registration order; no match answers 404.

A factory returns one of:

* a :class:`picows.WSListener` — accepted with ``101`` and no subprotocol;
* :func:`accept` ``(listener, subprotocol=..., headers=...)`` — ``101`` with
  ``Sec-WebSocket-Protocol`` set to the chosen subprotocol (and extra headers);
* :func:`reject` ``(status, message)`` — an HTTP error answer, connection closed;
* ``None`` — 404.

Listeners are plain picows listeners (``on_ws_connected``, ``on_ws_frame``,
``on_ws_disconnected``, ``pause_writing``/``resume_writing``). Fan-out rule for every
route: encode each outgoing message once and call ``transport.send`` on each socket
without awaiting; check ``transport.underlying_transport.get_write_buffer_size()`` against
a bound and close slow sockets instead of buffering without limit (the Pusher and STOMP
gateways share that engine: :mod:`ordercast.gateway.fanout`).

Lifecycle hooks: ``gateway.on_start(async_fn)`` runs after the socket is listening (start
per-gateway timers there); ``gateway.on_stop(async_fn)`` runs on shutdown, before the
runtime closes storage (close your connections with a "reconnect" code there). The bus
side is :class:`ordercast.gateway.hub.Hub` (``runtime.hub``): ``hub.add_consumer(c)``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from picows import (
    WSListener,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from ordercast.gateway.hub import Hub
from ordercast.protocols.logins import forwarded_client
from ordercast.protocols.netguard import Network

__all__ = [
    "GatewayServer",
    "ListenerFactory",
    "Matcher",
    "Upgrade",
    "UpgradeRequest",
    "accept",
    "peer_address",
    "reject",
]

log = logging.getLogger("ordercast.gateway")

Upgrade = WSListener | WSUpgradeResponseWithListener | None
Matcher = str | re.Pattern[str] | Callable[[str], bool]
ListenerFactory = Callable[["UpgradeRequest", "re.Match[str] | None"], Upgrade]
Hook = Callable[[], Awaitable[None]]

#: Largest frame accepted from any client (Pusher and STOMP limits are far below this).
MAX_FRAME_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A parsed WebSocket upgrade request, independent of picows types."""

    path: str
    query: Mapping[str, str]
    target: str
    headers: Mapping[str, str]
    subprotocols: tuple[str, ...] = ()

    def header(self, name: str, default: str | None = None) -> str | None:
        value = self.headers.get(name)
        return default if value is None else value

    def choose_subprotocol(self, supported: Sequence[str]) -> str | None:
        """The first subprotocol the client offered that we support (client order wins)."""
        for offered in self.subprotocols:
            if offered in supported:
                return offered
        return None

    @classmethod
    def from_picows(cls, request: WSUpgradeRequest) -> UpgradeRequest:
        target = request.path.decode("latin-1")
        parts = urlsplit(target)
        query: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(key, value)
        offered = tuple(
            p.strip()
            for value in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in value.split(",")
            if p.strip()
        )
        return cls(unquote(parts.path), query, target, request.headers, offered)


def peer_address(transport: WSTransport) -> str:
    """The client's IP address (the key of the failed-login limits), or "unknown"."""
    try:
        peer = transport.underlying_transport.get_extra_info("peername")
    except Exception:  # pragma: no cover - transport already gone
        return "unknown"
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "unknown")


def accept(
    listener: WSListener,
    subprotocol: str | None = None,
    headers: Iterable[tuple[str, str]] | Mapping[str, str] | None = None,
) -> WSUpgradeResponseWithListener:
    """Accept the upgrade with ``listener``, naming the chosen subprotocol if any."""
    extra: list[tuple[str, str]] = list(
        headers.items() if isinstance(headers, Mapping) else (headers or [])
    )
    if subprotocol:
        extra.append(("Sec-WebSocket-Protocol", subprotocol))
    response = WSUpgradeResponse.create_101_response(extra_headers=extra)
    return WSUpgradeResponseWithListener(response, listener)


def reject(status: int, message: str) -> WSUpgradeResponseWithListener:
    """Refuse the upgrade with an HTTP error (>= 400) and a plain-text reason."""
    response = WSUpgradeResponse.create_error_response(
        status, message.encode(), {"Content-Type": "text/plain; charset=utf-8"}
    )
    return WSUpgradeResponseWithListener(response, None)


@dataclass(slots=True)
class _Route:
    matcher: Matcher
    factory: ListenerFactory

    def match(self, path: str) -> tuple[bool, re.Match[str] | None]:
        if isinstance(self.matcher, str):
            return path == self.matcher, None
        if isinstance(self.matcher, re.Pattern):
            found = self.matcher.fullmatch(path)
            return found is not None, found
        return bool(self.matcher(path)), None


@dataclass
class GatewayServer:
    """The picows server plus its routes. Built by the runtime; started by ``ordercast run``."""

    hub: Hub
    host: str = "127.0.0.1"
    port: int = 6001
    _routes: list[_Route] = field(default_factory=list)
    _on_start: list[Hook] = field(default_factory=list)
    _on_stop: list[Hook] = field(default_factory=list)
    _on_drain: list[Hook] = field(default_factory=list)
    #: Set by :meth:`drain`: new upgrades are refused with 503 (a balancer tries another node).
    draining: bool = False
    _server: asyncio.Server | None = None
    #: Protocol gateways installed on this server, by name (``"pusher"``, ``"stomp"``).
    extensions: dict[str, Any] = field(default_factory=dict)
    #: TLS (``ordercast run --tls-cert/--tls-key``): the port then serves ``wss://``.
    ssl: ssl.SSLContext | None = None
    #: Proxies whose ``X-Forwarded-For`` names the client (``ORDERCAST_TRUSTED_PROXIES``).
    trusted_proxies: tuple[Network, ...] = ()

    def client_address(self, transport: WSTransport, forwarded_for: str | None) -> str:
        """The client's address of a socket (the key of the failed-login limits): its peer,
        or what trusted proxies say in the upgrade's ``X-Forwarded-For``."""
        return forwarded_client(peer_address(transport), forwarded_for, self.trusted_proxies)

    def add_route(self, matcher: Matcher, factory: ListenerFactory) -> None:
        """Route upgrade requests whose path matches ``matcher`` to ``factory``."""
        self._routes.append(_Route(matcher, factory))

    def route_names(self) -> list[str]:
        """Each route's path, or its pattern (what the security matrix checks against)."""
        out = []
        for route in self._routes:
            matcher = route.matcher
            if isinstance(matcher, str):
                out.append(matcher)
            elif isinstance(matcher, re.Pattern):
                out.append(str(matcher.pattern))
            else:
                out.append(getattr(matcher, "__name__", repr(matcher)))
        return out

    def on_start(self, hook: Hook) -> None:
        self._on_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        self._on_stop.append(hook)

    def on_drain(self, hook: Hook) -> None:
        self._on_drain.append(hook)

    async def drain(self) -> None:
        """Take this node out of service: refuse new upgrades (503) and let every protocol
        close its sockets with its reconnect code, so clients move to another node."""
        self.draining = True
        for hook in self._on_drain:
            try:
                await hook()
            except Exception:
                log.exception("gateway drain hook failed")

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def bound_port(self) -> int:
        """The actual port (useful with ``port=0`` in tests)."""
        if self._server is None or not self._server.sockets:
            return self.port
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, path: str = "") -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        scheme = "wss" if self.ssl is not None else "ws"
        return f"{scheme}://{host}:{self.bound_port}{path}"

    def _route(self, raw: WSUpgradeRequest) -> Upgrade:
        try:
            request = UpgradeRequest.from_picows(raw)
        except (UnicodeError, ValueError):
            return reject(400, "malformed request target")
        if self.draining:
            return reject(503, "this node is draining: connect to another node")
        for route in self._routes:
            matched, found = route.match(request.path)
            if matched:
                try:
                    return route.factory(request, found)
                except Exception:  # a bug in one route must not take the server down
                    log.exception("upgrade factory failed for %s", request.path)
                    return reject(500, "internal error")
        return reject(404, f"no WebSocket endpoint at {request.path}")

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Start the hub and listen. ``port=0`` picks a free port (see :attr:`bound_port`)."""
        if self._server is not None:
            return
        if host is not None:
            self.host = host
        if port is not None:
            self.port = port
        await self.hub.start()
        kwargs: dict[str, Any] = {"reuse_address": True, "backlog": 4096}
        if self.ssl is not None:
            kwargs["ssl"] = self.ssl
        self._server = await ws_create_server(
            self._route,
            self.host,
            self.port,
            max_frame_size=MAX_FRAME_SIZE,
            websocket_handshake_timeout=10,
            enable_auto_pong=True,
            **kwargs,
        )
        for hook in self._on_start:
            await hook()

    async def stop(self) -> None:
        if self._server is None:
            await self.hub.stop()
            return
        server, self._server = self._server, None
        server.close()
        for hook in self._on_stop:
            try:
                await hook()
            except Exception:
                log.exception("gateway stop hook failed")
        await self.hub.stop()
