"""The Doshii partner socket at ``/app/socket`` on the gateway port. Thin adapter.

``doshii-partner-node-sdk`` connects to ``websocketUrlOverride + base64(clientId)``, pings
every ``pingInterval`` with ``{"doshii": {"ping": …}}`` and dispatches every other frame
as ``emit[0]`` / ``emit[1]``. So this socket sends exactly two kinds of frame: the pong
for each ping, and ``{"emit": [event, Order]}`` (``order_created`` / ``order_updated``)
for each committed change of an order the app may see (its tenant, a location it is
granted) *and* is subscribed to (it created or changed the order, or ``POST
…/subscription``) — seed 003's rule, the same as the app's Doshii webhooks. Anything
wrong (authentication, a frame that is not a ping, a binary frame) closes the socket with
a close code and a reason (``protocols/doshii.py``); never a Pusher frame.

Authentication (``services/doshii.py``): ``auth`` is a JWT signed like the REST one, or —
for apps that opt in with the ``doshii_socket_client_id_auth`` setting — the SDK's bare
``base64(clientId)``. The route is registered before Pusher's ``/app/{key}``, so no Pusher
app can be named ``socket``.

The socket has no resume: a change committed while a partner is disconnected (or dropped
by a lagging bus) is not re-sent here; partners catch up with ``GET /partner/v3/orders``
(``updatedFrom``) or use webhooks, which are durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Final

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from ordercast.dialects import doshii as dialect
from ordercast.domain.access import may_see_order
from ordercast.domain.events import ORDER_CREATED
from ordercast.domain.order import Order
from ordercast.errors import TRY_AGAIN_LATER, OrdercastError, ProtocolError
from ordercast.gateway.fanout import close_transport
from ordercast.gateway.hub import Hub
from ordercast.gateway.server import GatewayServer, Upgrade, UpgradeRequest
from ordercast.ports import BusMessage, Store
from ordercast.protocols import doshii as wire
from ordercast.services.doshii import DoshiiAuth, DoshiiCaller
from ordercast.services.orders import order_resource

__all__ = ["PATHS", "DoshiiConnection", "DoshiiGateway"]

log = logging.getLogger("ordercast.gateway.doshii")

PATHS: Final = ("/app/socket", "/app/socket/")
TEXT: Final = WSMsgType.TEXT
MAX_BUFFER: Final = 1024 * 1024
MAX_QUEUED: Final = 16  # frames received before authentication finished


class DoshiiConnection(WSListener):
    def __init__(
        self, gateway: DoshiiGateway, auth: str | None, forwarded_for: str | None = None
    ) -> None:
        self.gateway = gateway
        self.auth = auth
        self.forwarded_for = forwarded_for
        self.transport: WSTransport | None = None
        self.caller: DoshiiCaller | None = None
        self.queued: list[str] = []
        self.dead = False

    # -- picows callbacks ------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.gateway.spawn(self.gateway.authenticate(self))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == TEXT:
            try:
                text = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self.close(wire.CLOSE_INVALID, "invalid UTF-8")
                return
            if self.caller is None:
                if len(self.queued) >= MAX_QUEUED:
                    self.close(wire.CLOSE_INVALID, "too many messages before authentication")
                else:
                    self.queued.append(text)
                return
            self.receive(text)
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind == WSMsgType.BINARY:
            self.close(wire.CLOSE_UNSUPPORTED, "binary frames are not supported")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.dead = True
        self.gateway.forget(self)

    # -- protocol --------------------------------------------------------------------

    def receive(self, text: str) -> None:
        try:
            ping = wire.parse_client_text(text)
        except ProtocolError as exc:
            self.close(wire.CLOSE_INVALID, exc.detail)
            return
        self.send(wire.encode_pong(ping))

    def send(self, data: bytes) -> None:
        if self.dead or self.transport is None:
            return
        raw = self.transport.underlying_transport
        if raw.get_write_buffer_size() > MAX_BUFFER:
            self.close(1013, "too slow: reconnect and catch up with GET /partner/v3/orders")
            return
        self.transport.send(TEXT, data)

    def close(self, code: int, reason: str) -> None:
        if self.dead or self.transport is None:
            return
        self.dead = True
        close_transport(self.transport, code, reason)
        self.gateway.forget(self)


class DoshiiGateway:
    """Doshii sockets by app, and the fan-out of order changes to them. One per process."""

    def __init__(self, store: Store, auth: DoshiiAuth, base_url: str) -> None:
        self.store = store
        self.auth = auth
        self.base_url = base_url
        self.by_app: dict[str, set[DoshiiConnection]] = {}
        self.callers: dict[str, DoshiiCaller] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._hub: Hub | None = None
        self.server: GatewayServer | None = None  # set by install()
        self.emitted = 0

    def install(self, server: GatewayServer) -> None:
        self.server = server
        server.extensions["doshii"] = self
        self._hub = server.hub
        for path in PATHS:
            server.add_route(path, self.factory)
        server.on_start(self._join_hub)
        server.on_stop(self.stop)

    async def _join_hub(self) -> None:
        # Joined when the gateway starts, after every other gateway installed itself: the
        # hub runs its consumers in turn, so this one's store read (who is subscribed)
        # never delays the Pusher and STOMP fan-out.
        if self._hub is not None and self not in self._hub.consumers:
            self._hub.add_consumer(self)

    def factory(self, request: UpgradeRequest, _match: Any) -> Upgrade:
        return DoshiiConnection(self, request.query.get("auth"), request.header("x-forwarded-for"))

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def authenticate(self, conn: DoshiiConnection) -> None:
        try:
            server, transport = self.server, conn.transport
            address = (
                server.client_address(transport, conn.forwarded_for)
                if server is not None and transport is not None
                else None
            )
            caller = await self.auth.from_socket_auth(conn.auth, address)
        except TRY_AGAIN_LATER as exc:
            log.warning("doshii socket: storage unavailable: %s", exc)
            conn.close(wire.CLOSE_TRY_AGAIN_LATER, "storage unavailable, reconnect later")
            return
        except OrdercastError as exc:
            conn.close(wire.CLOSE_POLICY, exc.detail)
            return
        except Exception:
            log.exception("doshii socket authentication failed")
            conn.close(wire.CLOSE_INTERNAL, "server error")
            return
        if conn.dead:
            return
        conn.caller = caller
        self.callers[caller.app.id] = caller
        self.by_app.setdefault(caller.app.id, set()).add(conn)
        queued, conn.queued = conn.queued, []
        for text in queued:
            if not conn.dead:
                conn.receive(text)

    def forget(self, conn: DoshiiConnection) -> None:
        if conn.caller is None:
            return
        sockets = self.by_app.get(conn.caller.app.id)
        if sockets is not None:
            sockets.discard(conn)
            if not sockets:
                del self.by_app[conn.caller.app.id]
                self.callers.pop(conn.caller.app.id, None)

    async def stop(self) -> None:
        for sockets in list(self.by_app.values()):
            for conn in list(sockets):
                conn.close(wire.CLOSE_GOING_AWAY, "server is shutting down")
        for task in list(self._tasks):
            task.cancel()

    # -- fan-out (hub consumer) --------------------------------------------------------

    def _candidates(self, order: dict[str, Any]) -> list[str]:
        """Apps with a Doshii socket here that may see this order."""
        tenant, location = order.get("tenant_id") or "", order.get("location_id") or ""
        return [
            app_id
            for app_id, caller in self.callers.items()
            if may_see_order(caller.principal, tenant, location, None)
        ]

    def on_message(self, message: BusMessage) -> Awaitable[None] | None:
        if message.kind != "order" or not self.by_app:
            return None
        order = message.payload.get("order") or {}
        if not self._candidates(order):
            return None
        return self._deliver(message.payload)

    async def _deliver(self, payload: dict[str, Any]) -> None:
        order = payload.get("order") or {}
        types = [str(ev.get("type")) for ev in payload.get("events") or []]
        if not types or all(t in dialect.SILENT for t in types):
            return
        subscribed = set(await self.store.subscriber_ids(str(order.get("id"))))
        targets = [app_id for app_id in self._candidates(order) if app_id in subscribed]
        if not targets:
            return
        name = dialect.wire_name(ORDER_CREATED if ORDER_CREATED in types else types[-1])
        resource = dialect.order_resource(
            order_resource(Order.from_dict(order), self.base_url, copy=False)
        )
        frame = wire.encode_emit(name, resource)
        for app_id in targets:
            for conn in list(self.by_app.get(app_id, ())):
                conn.send(frame)
                self.emitted += 1

    def on_lagged(self) -> Awaitable[None] | None:
        return None  # no resume on this socket (see the module docstring)
