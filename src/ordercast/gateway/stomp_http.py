"""STOMP on the HTTP port: plain WebSocket and SockJS at ``/ws`` and ``/websocket``.

Ordering Stack's client libraries connect STOMP to the same origin as the REST API
(``{BASE_URL}/ws``, ``wss://{host}/websocket``), plain WebSocket where the runtime has one and
SockJS (sockjs-client) where it has not. This ASGI middleware, outermost in the HTTP app,
serves those paths; everything else goes to the API. The gateway port keeps its own plain
WebSocket STOMP (picows) unchanged.

Both ways reuse the gateway's STOMP machinery (:mod:`ordercast.gateway.asgi_stomp`: each
connection is the gateway's ``StompConnection`` over an ASGI transport adapter).

Paths (``P`` = ``/ws`` or ``/websocket``):

* WebSocket ``P`` and ``P/websocket``: STOMP frames as WebSocket messages (the latter is
  SockJS's "raw WebSocket" URL).
* SockJS ``P/info``, ``P/{server}/{session}/websocket``, ``…/xhr_streaming``, ``…/xhr``,
  ``…/xhr_send`` (see :mod:`ordercast.gateway.sockjs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordercast.gateway.asgi_stomp import ASGIApp, Receive, Scope, Send, serve_websocket
from ordercast.gateway.sockjs import SockJs
from ordercast.gateway.stomp import StompGateway

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ordercast.runtime import Runtime

__all__ = ["PREFIXES", "StompOverHttp"]

PREFIXES = ("/ws", "/websocket")


class StompOverHttp:
    """ASGI middleware: STOMP (WebSocket, SockJS) at ``/ws`` and ``/websocket``; every other
    request goes to ``app``."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._gateway: StompGateway | None = None
        self._sockjs: SockJs | None = None

    def _prefix(self, path: str) -> str | None:
        for prefix in PREFIXES:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix
        return None

    async def _ready(self) -> tuple[StompGateway, SockJs]:
        runtime: Runtime = self.api.state.runtime
        gateway = runtime.stomp
        if self._gateway is not gateway or self._sockjs is None:
            self._gateway, self._sockjs = gateway, SockJs(gateway)
        if not runtime.hub.running:  # an app served without `ordercast run` (tests)
            await runtime.hub.start()
        return gateway, self._sockjs

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
