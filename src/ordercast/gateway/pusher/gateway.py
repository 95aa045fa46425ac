"""The Pusher-protocol gateway at ``/app/{key}``: a socket's life, and the parts put together.

Protocol rules live in :mod:`ordercast.protocols.pusher` (sans I/O). The gateway's parts:

* :mod:`~ordercast.gateway.pusher.connection` — one socket (picows) and the fan-out writers;
* :mod:`~ordercast.gateway.pusher.registry` — apps, channels, presence, users, server webhooks
  and the HTTP API's trigger path;
* :mod:`~ordercast.gateway.pusher.orders` — the Open Dining order channels (the hub's order
  events, last state, catch-up);
* :mod:`ordercast.gateway.cluster` — presence, counts and relays across nodes.

This module runs a socket's life: ``/app/{key}?protocol=…`` parsed, the app loaded (frames
that arrive meanwhile are queued), a :class:`~ordercast.protocols.pusher.PusherSession` opened,
its events handed to the registry, one timer for every socket's pings and timeouts, and the
sockets closed with 4200 (reconnect) on shutdown. :class:`PusherGateway` is also the hub
consumer: order and location events to the bridge, other nodes' relays to the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Final

from ordercast import logs
from ordercast.cluster import Registry
from ordercast.cluster.memory import MemoryCluster, MemoryRegistry
from ordercast.errors import TRY_AGAIN_LATER, ProtocolError
from ordercast.gateway.cluster import BUS_KIND, PusherCluster, new_node_id
from ordercast.gateway.hub import Hub
from ordercast.gateway.pusher.connection import DEFAULT_MAX_BUFFER, PusherConnection, PusherFanout
from ordercast.gateway.pusher.orders import OrderChannels
from ordercast.gateway.pusher.registry import AppState, ChannelRegistry, WebhookSink
from ordercast.gateway.server import GatewayServer, Upgrade, UpgradeRequest
from ordercast.ports import Bus, BusMessage, Clock, Store
from ordercast.protocols.pusher import (
    ClientEventReceived,
    CloseCode,
    PusherSession,
    SignedIn,
    SubscribeRequested,
    UnsubscribeRequested,
    parse_connection_request,
)
from ordercast.protocols.pusher import messages as pm

__all__ = ["PATH", "PusherConfig", "PusherGateway"]

log = logging.getLogger("ordercast.gateway.pusher")

PATH: Final = re.compile(r"/app/(?P<key>[^/]+)/?")


@dataclass(frozen=True, slots=True)
class PusherConfig:
    activity_timeout: int = 120
    """Seconds of silence before the server pings a socket (told to the client)."""
    pong_timeout: float = 30.0
    """Seconds a pinged socket has to answer before it is closed (4201)."""
    max_buffer: int = DEFAULT_MAX_BUFFER
    """Socket write buffer above which a socket is closed as over capacity (4100)."""
    max_presence_members: int = 100
    """Most members of one presence channel."""


class PusherGateway:
    """Pusher connections, channels and fan-out for every app. One per process.

    Collaborators: ``store`` (apps, orders, events, locations), ``clock`` (wall time: the
    catch-up window), ``config``, ``webhooks`` (the server webhooks' sink), and the cluster:
    its ``cluster`` registry (in-process for one node, Redis for several), the ``bus`` the
    relays to other nodes go through, its ``heartbeat`` and ``node_timeout``. The hub comes
    with the gateway server it is installed on (:meth:`install`). Who may see what is
    :mod:`ordercast.domain.access`."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: PusherConfig | None = None,
        *,
        webhooks: WebhookSink | None = None,
        cluster: Registry | None = None,
        bus: Bus | None = None,
        heartbeat: float = 2.0,
        node_timeout: float = 10.0,
    ) -> None:
        config = config or PusherConfig()
        self._ids = itertools.count(1)
        self._prefix = secrets.randbelow(10**9)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        # The sockets' timers: (when, tiebreak, socket id), a heap the sweep pops from. An
        # entry is a lower bound (a client's activity only moves its deadline later): the
        # sweep re-reads the session's deadline when the entry comes up and pushes it back.
        self._timers: list[tuple[float, int, str]] = []
        self._timer_ids = itertools.count()
        self.out = PusherFanout(config.max_buffer)
        self.channels = ChannelRegistry(
            store,
            self.out,
            self._spawn,
            activity_timeout=config.activity_timeout,
            pong_timeout=config.pong_timeout,
            max_presence_members=config.max_presence_members,
            webhooks=webhooks,
        )
        self.orders = OrderChannels(store, self.channels, clock, self._spawn)
        self.channels.owner = self.orders
        self.cluster = PusherCluster(
            self.channels,
            cluster or MemoryRegistry(MemoryCluster(), new_node_id()),
            bus,
            heartbeat=heartbeat,
            node_timeout=node_timeout,
        )
        self.hub: Hub | None = None

    # -- wiring ----------------------------------------------------------------------

    def install(self, server: GatewayServer) -> None:
        """Route ``/app/{key}`` on ``server`` here; consume its hub's messages."""
        self.hub = server.hub
        server.extensions["pusher"] = self
        server.add_route(PATH, self.factory)
        server.hub.add_consumer(self)
        # A dead node may have committed events whose bus message never went out: every
        # gateway of this node catches up from storage when the cluster reaps one.
        self.cluster.on_node_lost = server.hub.catch_up
        server.on_start(self.start)
        server.on_stop(self.stop)
        server.on_drain(lambda: self.cluster.drain())  # the cluster in place then

    def factory(self, request: UpgradeRequest, match: re.Match[str] | None) -> Upgrade:
        return PusherConnection(self, self.out, self.new_socket_id(), request.target)

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="pusher-timers")
        await self.cluster.start()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for conn in list(self.channels.connections.values()):
            # 4200: reconnect now (a restarting server); pusher-js retries at once.
            if conn.session is not None:
                conn.session.fail(CloseCode.GENERIC_RECONNECT, "Server is shutting down")
                conn.flush()
            else:
                conn.close(CloseCode.GENERIC_RECONNECT, "Server is shutting down")
        for task in list(self._tasks):
            task.cancel()
        await self.cluster.stop()

    def new_socket_id(self) -> str:
        return f"{self._prefix}.{next(self._ids)}"

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pusher task failed", exc_info=task.exception())

    # -- a socket's life (SocketEvents) --------------------------------------------------

    def connected(self, conn: PusherConnection) -> None:
        try:
            request = parse_connection_request(conn.target)
        except ProtocolError as exc:
            code = int(exc.fields.get("close_code", CloseCode.PATH_NOT_FOUND))
            conn.send_text(pm.encode_error(exc.detail, code))
            conn.close(code, exc.detail)
            return
        self.channels.connections[conn.socket_id] = conn
        state = self.channels.cached_app(request.app_key)
        if state is not None:
            self._open(conn, state, request.protocol)
        else:
            self._spawn(self._load_and_open(conn, request.app_key, request.protocol))

    async def _load_and_open(self, conn: PusherConnection, key: str, protocol: int) -> None:
        try:
            state = await self.channels.app_state(key)
        except TRY_AGAIN_LATER as exc:  # 41xx: the client reconnects after backing off
            log.warning("pusher: storage unavailable: %s", exc)
            reason = "Storage unavailable, reconnect later"
            conn.send_text(pm.encode_error(reason, CloseCode.OVER_CAPACITY))
            conn.close(CloseCode.OVER_CAPACITY, reason)
            return
        except Exception:
            log.exception("app lookup failed")
            conn.send_text(pm.encode_error("Server error", CloseCode.GENERIC_RECONNECT))
            conn.close(CloseCode.GENERIC_RECONNECT, "Server error")
            return
        if conn.dead:
            return
        if state is None:
            message = f"App key {key} not in this cluster. Did you forget to specify the cluster?"
            conn.send_text(pm.encode_error(message, CloseCode.APP_NOT_FOUND))
            conn.close(CloseCode.APP_NOT_FOUND, "App not found")
            return
        self._open(conn, state, protocol)

    def _open(self, conn: PusherConnection, state: AppState, protocol: int) -> None:
        conn.app_id = state.app.id
        state.connections += 1
        conn.opened_at = time.monotonic()
        logs.ws_opened("pusher", conn.socket_id, app=state.app.id, tenant=state.app.tenant_id)
        conn.session = PusherSession(
            conn.socket_id, state.config, now=time.monotonic(), protocol=protocol
        )
        pending, conn.pending = conn.pending or [], None
        for text in pending:
            conn.session.receive_data(text, time.monotonic())
        self._schedule(conn.socket_id, conn.session.next_deadline(), conn.opened_at)
        self.received(conn)

    def disconnected(self, conn: PusherConnection) -> None:
        channels = self.channels
        if channels.connections.pop(conn.socket_id, None) is None:
            return
        session = conn.session
        state = channels.apps.get(conn.app_id) if conn.app_id is not None else None
        if state is None or session is None:
            return
        state.connections -= 1
        logs.ws_closed(
            "pusher",
            conn.socket_id,
            app=state.app.id,
            tenant=state.app.tenant_id,
            seconds=time.monotonic() - conn.opened_at,
            subscriptions=len(session.channels),
        )
        for name in session.channels:
            channels.leave(state, conn, name)
        if session.user is not None:
            channels.signed_out(state, conn, session.user.id)

    def received(self, conn: PusherConnection) -> None:
        session = conn.session
        state = self.channels.apps.get(conn.app_id) if conn.app_id is not None else None
        if session is None or state is None:
            return
        channels = self.channels
        for event in session.events_received():
            try:
                if isinstance(event, SubscribeRequested):
                    channels.subscribe(state, conn, event)
                elif isinstance(event, UnsubscribeRequested):
                    channels.leave(state, conn, event.channel)
                elif isinstance(event, ClientEventReceived):
                    channels.client_event(state, conn, event)
                elif isinstance(event, SignedIn):
                    channels.signed_in(state, conn, event.user.id)
            except Exception:  # a bug must not take the connection down silently
                log.exception("pusher event handling failed")
                session.send_error("Server error")
        conn.flush()

    async def _sweep(self) -> None:
        """Ping idle sockets, close unanswered ones (4201). One timer for all sockets,
        once a second: it pops the sockets whose deadline came (a heap: at 9,500 sockets
        a walk over every one each second was 3 % of the process in a rush)."""
        timers = self._timers
        connections = self.channels.connections
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                _, _, socket_id = heapq.heappop(timers)
                conn = connections.get(socket_id)
                if conn is None or conn.session is None:
                    continue  # gone: its entry goes with it
                session = conn.session
                deadline = session.next_deadline()
                if deadline is not None and deadline <= now:
                    session.on_timer(now)
                    conn.flush()
                    deadline = session.next_deadline()
                self._schedule(socket_id, deadline, now)

    def _schedule(self, socket_id: str, deadline: float | None, now: float) -> None:
        if deadline is None:  # closed
            return
        # never at or before now: a session whose timer did not move it is looked at again
        # on the next tick, not in a loop
        when = deadline if deadline > now else now + 1.0
        heapq.heappush(self._timers, (when, next(self._timer_ids), socket_id))

    # -- the hub's messages ----------------------------------------------------------

    def on_message(self, message: BusMessage) -> Awaitable[None] | None:
        kind = message.kind
        if kind == "order":
            return self.orders.on_order(message)
        if kind == BUS_KIND:
            return self.cluster.on_remote(message.payload)
        if kind == "location":
            self.orders.on_location(message.payload)
        return None

    def on_lagged(self) -> Awaitable[None] | None:
        if not self.channels.by_name:
            return None
        return self.orders.catch_up(self.hub.lagged_since if self.hub is not None else None)
