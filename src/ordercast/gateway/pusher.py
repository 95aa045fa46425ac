"""Pusher-protocol connections at ``/app/{key}`` and the fan-out registry. Thin adapter.

Protocol rules live in :mod:`ordercast.protocols.pusher` (sans I/O); this module owns the
sockets, the channel registry per app, presence rosters, the Open Dining order channels
(rendered by :mod:`ordercast.dialects.opendining`) and the HTTP API's trigger path.

Hot path (:meth:`PusherGateway.fanout`): each message is JSON-encoded once into one
``bytes`` frame and queued with a snapshot of the channel's subscribers on the fan-out engine
(:mod:`ordercast.gateway.fanout`), which writes the queue once per event-loop iteration: a
single frame with one ``transport.send`` per socket (:meth:`PusherGateway._send_each`), a
run of frames for the same subscribers as ONE ``write`` per socket. No await per socket.
Any direct write to a connection flushes the queue first, so every socket sees messages in
the order they were produced. A socket whose kernel+asyncio write buffer is past
``max_buffer`` is closed with 4100 (over capacity; pusher-js reconnects after 1 s and
catches up by ``seq``) instead of buffering without bound.

Per-app isolation: channels, presence rosters and users are kept per app (``/app/{key}``).
Order events go to the ``private-o-{order_id}`` channel of every app of the order's tenant
that is granted the order's location; ``presence-r-{location_id}`` likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from ordercast import logs
from ordercast.cluster.memory import MemoryCluster, MemoryRegistry
from ordercast.dialects import opendining
from ordercast.dialects.opendining import LocationView
from ordercast.domain.access import (
    Access,
    AppPrincipal,
    location_access,
    may_see_order,
    order_access,
)
from ordercast.domain.events import EventRecord
from ordercast.domain.isotime import iso
from ordercast.errors import ProtocolError
from ordercast.gateway.cluster import BUS_KIND, PusherCluster, new_node_id
from ordercast.gateway.fanout import Fanout, SlowConsumers, frame_blob
from ordercast.gateway.hub import Hub
from ordercast.gateway.server import GatewayServer, Upgrade, UpgradeRequest
from ordercast.ports import App, BusMessage, Store
from ordercast.protocols.pusher import (
    ChannelKind,
    ClientEventReceived,
    CloseCode,
    JoinResult,
    PresenceRoster,
    PusherSession,
    SessionConfig,
    SignedIn,
    SubscribeRequested,
    UnsubscribeRequested,
    encode_event,
    is_cache_channel,
    parse_connection_request,
)
from ordercast.protocols.pusher import messages as pm
from ordercast.protocols.pusher.httpapi import TriggerEvent
from ordercast.services.directory import app_principal, plausible_id

__all__ = ["PusherConnection", "PusherGateway", "WebhookSink", "pusher_of"]

log = logging.getLogger("ordercast.gateway.pusher")

TEXT: Final = WSMsgType.TEXT
PATH: Final = re.compile(r"/app/(?P<key>[^/]+)/?")
#: Past this many bytes waiting in a socket's write buffer, the socket is closed with 4100.
DEFAULT_MAX_BUFFER: Final = 1024 * 1024
APP_CACHE_SECONDS: Final = 30.0
LAST_STATE_ENTRIES: Final = 10_000
#: Bounds of the other per-order / per-name maps (oldest entry forgotten past them): seqs
#: rendered for listened-to orders, location views, cache channels' last frames per app.
SENT_SEQ_ENTRIES: Final = 100_000
LOCATION_ENTRIES: Final = 10_000
CACHE_CHANNEL_ENTRIES: Final = 10_000
#: How far back to look for an order channel's last event when it is not cached.
LAST_STATE_LOOKBACK: Final = 50
#: After a bus gap: orders changed this many seconds before it began are replayed too, the
#: window when its start is unknown, and the most orders replayed per presence channel.
CATCH_UP_MARGIN: Final = 30.0
CATCH_UP_WINDOW: Final = 300.0
CATCH_UP_ORDERS: Final = 1000

#: Channels whose subscription is checked against the app's grants (order, restaurant).
GUARDED_PREFIXES: Final = (opendining.ORDER_CHANNEL_PREFIX, opendining.LOCATION_CHANNEL_PREFIX)


@dataclass(frozen=True, slots=True)
class ChannelScope:
    """Whose an order or restaurant channel is: what the access rules need to know."""

    tenant_id: str
    location_id: str
    user_id: str | None


UNKNOWN_SCOPE: Final = ChannelScope("", "", None)

#: A channel's subscribers as the fan-out queues them, and one queued frame.
Targets = tuple["PusherConnection", ...]
Queued = tuple[Targets, bytes, "PusherConnection | None", bool]

#: ``async (app, events)``: Pusher server webhooks (channel_occupied, …) for one app.
WebhookSink = Callable[[App, list[dict[str, Any]]], Awaitable[None]]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class Channel:
    name: str
    subs: dict[str, PusherConnection] = field(default_factory=dict)
    _targets: tuple[PusherConnection, ...] | None = None
    #: Per-subscriber bookkeeping of an order channel: a socket sent the order's last state
    #: from storage -> that event's seq. The live path skips the socket for seqs up to it
    #: (the same event's bus message may still be on its way) and then forgets it.
    floors: dict[PusherConnection, int] = field(default_factory=dict)

    @property
    def targets(self) -> tuple[PusherConnection, ...]:
        """A snapshot of subscribers, rebuilt only after a change (safe to iterate)."""
        if self._targets is None:
            self._targets = tuple(self.subs.values())
        return self._targets

    def add(self, conn: PusherConnection) -> None:
        self.subs[conn.socket_id] = conn
        self._targets = None

    def remove(self, conn: PusherConnection) -> bool:
        if self.subs.pop(conn.socket_id, None) is None:
            return False
        self._targets = None
        self.floors.pop(conn, None)
        return True

    def live_targets(self, seq: int) -> tuple[PusherConnection, ...]:
        """The subscribers that should get the order event ``seq`` live."""
        floors = self.floors
        if not floors:
            return self.targets
        targets = tuple(c for c in self.targets if floors.get(c, 0) < seq)
        for conn, floor in list(floors.items()):
            if floor <= seq:
                del floors[conn]
        return targets


@dataclass(slots=True)
class AppState:
    app: App
    config: SessionConfig
    loaded_at: float
    channels: dict[str, Channel] = field(default_factory=dict)
    roster: PresenceRoster = field(default_factory=PresenceRoster)
    users: dict[str, set[PusherConnection]] = field(default_factory=dict)
    cache: dict[str, bytes] = field(default_factory=dict)  # cache channels: last frame
    connections: int = 0
    #: The app as the access rules see it (rebuilt when the app is reloaded).
    principal: AppPrincipal = field(init=False)

    def __post_init__(self) -> None:
        self.principal = app_principal(self.app)


class PusherConnection(WSListener):
    """One socket. Frames before the app is known are queued."""

    def __init__(self, gateway: PusherGateway, target: str) -> None:
        self.gateway = gateway
        self.target = target
        self.socket_id = gateway.new_socket_id()
        self.transport: WSTransport | None = None
        self.raw: asyncio.Transport | None = None
        self.session: PusherSession | None = None
        self.state: AppState | None = None
        self.pending: list[str] | None = []
        self.paused = False
        self.dead = False
        self.opened_at = 0.0

    # -- picows callbacks -----------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        self.gateway.connected(self)

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
            self.gateway.after_input(self)
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
        self.gateway.disconnected(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    # -- output ----------------------------------------------------------------------

    def send_text(self, text: str | bytes) -> None:
        if not self.dead and self.transport is not None:
            if self.gateway.out.pending:
                self.gateway.out.flush()  # keep this socket's order of messages
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
        with contextlib.suppress(Exception):
            self.transport.send_close(code, reason.encode()[:123])  # type: ignore[arg-type]
        self.transport.disconnect()
        raw = self.raw
        if raw is not None:
            # A peer that never reads would keep the socket forever: abort after a grace.
            asyncio.get_running_loop().call_later(2.0, _abort, raw)
        # The registry forgets us now (on_ws_disconnected may come later).
        self.gateway.disconnected(self)


def _abort(raw: asyncio.Transport) -> None:
    if not raw.is_closing():
        raw.abort()
    else:
        with contextlib.suppress(Exception):
            raw.abort()


class PusherGateway:
    """Pusher connections, channels and fan-out for every app. One per process."""

    def __init__(
        self,
        store: Store,
        *,
        activity_timeout: int = 120,
        pong_timeout: float = 30.0,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        max_presence_members: int = 100,
        webhooks: WebhookSink | None = None,
    ) -> None:
        self.store = store
        self.activity_timeout = activity_timeout
        self.pong_timeout = pong_timeout
        self.max_presence_members = max_presence_members
        self.webhooks = webhooks
        self.apps: dict[str, AppState] = {}  # by app id
        self._keys: dict[str, str] = {}  # app key -> app id
        self.by_name: dict[str, set[str]] = {}  # channel name -> app ids with subscribers
        self.connections: dict[str, PusherConnection] = {}
        self.locations: dict[str, LocationView] = {}
        self.last_state: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        # Order id -> highest seq the live path (or a catch-up) rendered, only for orders
        # someone listens to (their order channel or their location's presence channel):
        # a catch-up after a bus gap starts there, and the live path skips what a catch-up
        # sent already.
        self.sent_seq: dict[str, int] = {}
        #: Guarded channel -> whose it is (orders never move between tenants or locations).
        self.scopes: OrderedDict[str, ChannelScope] = OrderedDict()
        # Order channel -> seq of the last event the live path sent to its subscribers (only
        # while the channel has subscribers): tells a last-state load whether its socket has
        # already been sent something at least as new while the load was reading storage.
        self.live_seq: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._prefix = secrets.randbelow(10**9)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        #: The fan-out: frames for a channel's subscribers, written at the end of the loop
        #: iteration (runs for the same subscribers as one write per socket).
        self.out: Fanout[Targets, bytes, PusherConnection | None] = Fanout(
            self._send_each, self._write_each
        )
        self.slow = SlowConsumers(max_buffer)  # past it, a socket is closed with 4100
        self.writes = 0  # socket writes by the fan-out (coalesced runs count once)
        #: Cluster-wide counts, presence and relays (gateway/cluster.py); one node by default,
        #: the runtime puts a Redis-backed one here for a ``redis://`` bus.
        self.cluster = PusherCluster(self, MemoryRegistry(MemoryCluster(), new_node_id()), None)
        #: Called once per rendered channel of an order event (order id, seq, "pusher",
        #: channel, subscribed sockets) when set (the console's order timeline).
        self.trace: Callable[[str, int, str, str, int], None] | None = None
        self.hub: Hub | None = None

    # -- wiring ----------------------------------------------------------------------

    def install(self, server: GatewayServer) -> None:
        self.hub = server.hub
        server.extensions["pusher"] = self
        server.add_route(PATH, self.factory)
        server.hub.add_consumer(self)
        server.on_start(self.start)
        server.on_stop(self.stop)
        server.on_drain(lambda: self.cluster.drain())  # the cluster in place then

    def factory(self, request: UpgradeRequest, match: re.Match[str] | None) -> Upgrade:
        return PusherConnection(self, request.target)

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
        for conn in list(self.connections.values()):
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

    # -- apps ------------------------------------------------------------------------

    def _state_for(self, app: App) -> AppState:
        state = self.apps.get(app.id)
        config = SessionConfig(
            app_key=app.key,
            app_secret=app.secret,
            activity_timeout=self.activity_timeout,
            pong_timeout=self.pong_timeout,
            client_events=bool(app.settings.get("client_events")),
        )
        if state is None:
            state = AppState(app, config, time.monotonic())
            state.roster = PresenceRoster(self.max_presence_members)
            self.apps[app.id] = state
        else:
            state.app, state.config, state.loaded_at = app, config, time.monotonic()
            state.principal = app_principal(app)
        self._keys[app.key] = app.id
        return state

    def refresh_app(self, app: App) -> None:
        """``app`` changed (settings, grants): use it now if this process has it loaded."""
        if app.id in self.apps:
            self._state_for(app)

    def cached_app(self, key: str) -> AppState | None:
        app_id = self._keys.get(key)
        state = self.apps.get(app_id) if app_id else None
        if state is None or time.monotonic() - state.loaded_at > APP_CACHE_SECONDS:
            return None
        return state

    async def app_state(self, key: str) -> AppState | None:
        state = self.cached_app(key)
        if state is not None:
            return state
        if not plausible_id(key):
            return None  # never sent to the database (NUL bytes, surrogates, megabytes)
        app = await self.store.get_app_by_key(key)
        return None if app is None else self._state_for(app)

    async def app_state_by_id(self, app_id: str) -> AppState | None:
        state = self.apps.get(app_id)
        if state is not None and time.monotonic() - state.loaded_at <= APP_CACHE_SECONDS:
            return state
        app = await self.store.get_app(app_id) if plausible_id(app_id) else None
        return None if app is None else self._state_for(app)

    # -- connection lifecycle ----------------------------------------------------------

    def connected(self, conn: PusherConnection) -> None:
        try:
            request = parse_connection_request(conn.target)
        except ProtocolError as exc:
            code = int(exc.fields.get("close_code", CloseCode.PATH_NOT_FOUND))
            conn.send_text(pm.encode_error(exc.detail, code))
            conn.close(code, exc.detail)
            return
        self.connections[conn.socket_id] = conn
        state = self.cached_app(request.app_key)
        if state is not None:
            self._open(conn, state, request.protocol)
        else:
            self._spawn(self._load_and_open(conn, request.app_key, request.protocol))

    async def _load_and_open(self, conn: PusherConnection, key: str, protocol: int) -> None:
        try:
            state = await self.app_state(key)
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
        conn.state = state
        state.connections += 1
        conn.opened_at = time.monotonic()
        logs.ws_opened("pusher", conn.socket_id, app=state.app.id, tenant=state.app.tenant_id)
        conn.session = PusherSession(
            conn.socket_id, state.config, now=time.monotonic(), protocol=protocol
        )
        pending, conn.pending = conn.pending or [], None
        for text in pending:
            conn.session.receive_data(text, time.monotonic())
        self.after_input(conn)

    def disconnected(self, conn: PusherConnection) -> None:
        if self.connections.pop(conn.socket_id, None) is None:
            return
        state, session = conn.state, conn.session
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
            self._leave(state, conn, name)
        if session.user is not None:
            sockets = state.users.get(session.user.id)
            if sockets is not None:
                sockets.discard(conn)
                if not sockets:
                    del state.users[session.user.id]

    async def _sweep(self) -> None:
        """Ping idle sockets, close unanswered ones (4201). One timer for all sockets."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections.values()):
                session = conn.session
                if session is None:
                    continue
                deadline = session.next_deadline()
                if deadline is not None and deadline <= now:
                    session.on_timer(now)
                    conn.flush()

    # -- client input ----------------------------------------------------------------

    def after_input(self, conn: PusherConnection) -> None:
        session, state = conn.session, conn.state
        if session is None or state is None:
            return
        for event in session.events_received():
            try:
                if isinstance(event, SubscribeRequested):
                    self._subscribe(state, conn, event)
                elif isinstance(event, UnsubscribeRequested):
                    self._leave(state, conn, event.channel)
                elif isinstance(event, ClientEventReceived):
                    self._client_event(state, conn, event)
                elif isinstance(event, SignedIn):
                    state.users.setdefault(event.user.id, set()).add(conn)
            except Exception:  # a bug must not take the connection down silently
                log.exception("pusher event handling failed")
                session.send_error("Server error")
        conn.flush()

    def channel(self, state: AppState, name: str) -> Channel:
        """The local channel (created on its first local subscriber)."""
        channel = state.channels.get(name)
        if channel is None:
            channel = state.channels[name] = Channel(name)
            self.by_name.setdefault(name, set()).add(state.app.id)
        return channel

    def _subscribe(self, state: AppState, conn: PusherConnection, req: SubscribeRequested) -> None:
        """A signed subscription. A valid signature says the app's own key signed it — any
        app may sign any name with its own secret —, so the order and restaurant channels
        are also checked against the app's grants (:mod:`ordercast.domain.access`) before
        anything is sent: another tenant's or location's order gets
        ``pusher:subscription_error``, never a byte of the order."""
        name = req.channel
        if name.startswith(GUARDED_PREFIXES):
            scope = self.scopes.get(name)
            if scope is None:
                self._spawn(self._look_up_and_subscribe(state, conn, req))
                return
            if not self._may_join(state, conn, name, scope):
                return
        self._join(state, conn, req)

    async def _look_up_and_subscribe(
        self, state: AppState, conn: PusherConnection, req: SubscribeRequested
    ) -> None:
        name = req.channel
        scope = await self._scope(name)
        session = conn.session
        if conn.dead or session is None or name not in session.channels:
            return  # gone or unsubscribed meanwhile
        if session.is_subscribed(name):
            return
        if self._may_join(state, conn, name, scope):
            self._join(state, conn, req)
        conn.flush()

    async def _scope(self, name: str) -> ChannelScope:
        """Who a guarded channel belongs to, from storage (remembered, bounded)."""
        scope = self.scopes.get(name)
        if scope is not None:
            return scope
        if name.startswith(opendining.ORDER_CHANNEL_PREFIX):
            order_id = name[len(opendining.ORDER_CHANNEL_PREFIX) :]
            order = await self.store.get_order(order_id) if plausible_id(order_id) else None
            if order is None:
                return UNKNOWN_SCOPE  # not remembered: the order may be created later
            scope = ChannelScope(order.tenant_id, order.location_id, order.user_id)
        else:
            location_id = name[len(opendining.LOCATION_CHANNEL_PREFIX) :]
            loc = await self.store.get_location(location_id) if plausible_id(location_id) else None
            if loc is None:
                return UNKNOWN_SCOPE
            scope = ChannelScope(loc.tenant_id, loc.id, None)
        self._remember_scope(name, scope)
        return scope

    def _remember_scope(self, name: str, scope: ChannelScope) -> None:
        self.scopes[name] = scope
        self.scopes.move_to_end(name)
        while len(self.scopes) > LAST_STATE_ENTRIES:
            self.scopes.popitem(last=False)

    def _may_join(
        self, state: AppState, conn: PusherConnection, name: str, scope: ChannelScope
    ) -> bool:
        """True if ``state``'s app may see the channel's order or restaurant; otherwise
        the subscription is refused (``pusher:subscription_error``) and False."""
        if scope is UNKNOWN_SCOPE:
            access = Access.NOT_FOUND
        elif name.startswith(opendining.ORDER_CHANNEL_PREFIX):
            access = order_access(state.principal, scope.tenant_id, scope.location_id, None)
        else:
            access = location_access(state.principal, scope.location_id, scope.tenant_id)
        if access is Access.ALLOWED:
            return True
        session = conn.session
        assert session is not None
        if access is Access.NOT_FOUND:
            session.subscription_error(name, "AuthError", f"{name} not found", 404)
        else:
            session.subscription_error(
                name, "AuthError", f"{name} is at a location this app is not granted", 403
            )
        return False

    def _join(self, state: AppState, conn: PusherConnection, req: SubscribeRequested) -> None:
        session = conn.session
        assert session is not None
        name = req.channel
        if req.kind is ChannelKind.PRESENCE:
            assert req.member is not None
            joined = state.roster.join(name, conn.socket_id, req.member)
            if joined is JoinResult.FULL:
                session.subscription_error(
                    name,
                    "LimitReached",
                    f"The presence channel {name} is full ({self.max_presence_members} members)",
                    4100,
                )
                return
            # Confirmed by the cluster's roster (gateway/cluster.py), a moment later.
            self.cluster.join(state, conn, req, first_local=joined is JoinResult.ADDED)
            return
        channel = self.channel(state, name)
        channel.add(conn)
        self.cluster.subscribed(state, name)
        if not session.subscription_succeeded(name):
            self._leave(state, conn, name)
            return
        if req.is_cache:
            cached = state.cache.get(name)
            if cached is not None:
                conn.flush()  # subscription_succeeded first, then the cached event
                conn.send_text(cached)
            else:
                session.cache_miss(name)
        elif name.startswith(opendining.ORDER_CHANNEL_PREFIX):
            self._send_last_state(state, conn, name)

    def _leave(self, state: AppState, conn: PusherConnection, name: str) -> None:
        channel = state.channels.get(name)
        if channel is None or not channel.remove(conn):
            return
        if channel_is_presence(name):
            user_id = state.roster.leave(name, conn.socket_id)
            if user_id is not None:
                self.cluster.left(state, name, user_id)  # member_removed if cluster-wide
        self.cluster.unsubscribed(state, name)  # channel_vacated if cluster-wide
        if not channel.subs:
            del state.channels[name]
            apps = self.by_name.get(name)
            if apps is not None:
                apps.discard(state.app.id)
                if not apps:
                    del self.by_name[name]
                    self.live_seq.pop(name, None)
                    if name.startswith(opendining.ORDER_CHANNEL_PREFIX):
                        self.sent_seq.pop(name[len(opendining.ORDER_CHANNEL_PREFIX) :], None)

    def _client_event(
        self, state: AppState, conn: PusherConnection, event: ClientEventReceived
    ) -> None:
        channel = state.channels.get(event.channel)
        if channel is None:
            return
        frame = encode_event(event.event, event.channel, event.data, event.user_id).encode()
        self.fanout(channel, frame, exclude=conn)
        self.cluster.relay(state.app.id, event.channel, frame)
        hook: dict[str, Any] = {
            "name": "client_event",
            "channel": event.channel,
            "event": event.event,
            "data": event.data,
            "socket_id": conn.socket_id,
        }
        if event.user_id is not None:
            hook["user_id"] = event.user_id
        self._webhook(state, hook)

    def _webhook(self, state: AppState, event: dict[str, Any]) -> None:
        if self.webhooks is not None:
            self._spawn(self.webhooks(state.app, [event]))

    # -- fan-out (the hot path) --------------------------------------------------------

    def fanout(
        self, channel: Channel, frame: bytes, exclude: PusherConnection | None = None
    ) -> None:
        """Queue one encoded frame for every current subscriber of ``channel``; the queue is
        written at the end of this loop iteration (:mod:`ordercast.gateway.fanout`). A frame
        that skips a socket (``exclude``) is written alone. Never awaits."""
        targets = channel.targets
        if targets:
            self.out.put(targets, frame, exclude, exclude is not None)

    def _over_capacity(self, conn: PusherConnection) -> bool:
        if self.slow.too_slow(conn.raw):
            conn.close(CloseCode.OVER_CAPACITY, "Over capacity: the client reads too slowly")
            return True
        return False

    def _send_each(
        self,
        targets: tuple[PusherConnection, ...],
        frame: bytes,
        exclude: PusherConnection | None,
    ) -> None:
        """The fan-out's writer of one frame: one ``transport.send`` per socket."""
        for conn in targets:
            if conn.dead or conn is exclude:
                continue
            if conn.paused and self._over_capacity(conn):
                continue
            conn.transport.send(TEXT, frame)  # type: ignore[union-attr]
        self.writes += len(targets)

    def _write_each(self, targets: tuple[PusherConnection, ...], run: list[Queued]) -> None:
        """The fan-out's writer of a run of frames to the same sockets: one raw write of
        the consecutive WebSocket frames per socket."""
        blob = frame_blob([item[1] for item in run])
        for conn in targets:
            if conn.dead:
                continue
            if conn.paused and self._over_capacity(conn):
                continue
            conn.raw.write(blob)  # type: ignore[union-attr]
        self.writes += len(targets)

    def publish(
        self,
        app_ids: Iterable[str],
        channel_name: str,
        frame: bytes,
        exclude_socket: str | None = None,
    ) -> None:
        for app_id in app_ids:
            state = self.apps.get(app_id)
            if state is None:
                continue
            channel = state.channels.get(channel_name)
            if channel is None:
                continue
            exclude = self.connections.get(exclude_socket) if exclude_socket else None
            self.fanout(channel, frame, exclude)

    def trigger(self, state: AppState, event: TriggerEvent) -> dict[str, dict[str, int]]:
        """The HTTP API's trigger: encode once per channel, write, report ``info``."""
        info: dict[str, dict[str, int]] = {}
        exclude = self.connections.get(event.socket_id) if event.socket_id else None
        for name in event.channels:
            frame = encode_event(event.name, name, event.data).encode()
            if is_cache_channel(name):
                cache = state.cache
                cache.pop(name, None)
                if len(cache) >= CACHE_CHANNEL_ENTRIES:
                    del cache[next(iter(cache))]
                cache[name] = frame
            channel = state.channels.get(name)
            if channel is not None:
                self.fanout(channel, frame, exclude)
            if event.info:
                info[name] = self.channel_info(state, name, event.info)
        return info

    def channel_info(self, state: AppState, name: str, wanted: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        channel = state.channels.get(name)
        presence = channel_is_presence(name)
        for attribute in wanted:
            if attribute == "user_count" and presence:
                out["user_count"] = state.roster.user_count(name)
            elif attribute == "subscription_count" and not presence:
                out["subscription_count"] = len(channel.subs) if channel else 0
            elif attribute == "cache" and name in state.cache:
                out["cache"] = {"data": json.loads(state.cache[name])["data"], "ttl": 1800}
        return out

    def terminate_user(self, state: AppState, user_id: str) -> int:
        sockets = list(state.users.get(user_id, ()))
        for conn in sockets:
            if conn.session is not None:
                conn.session.fail(CloseCode.UNAUTHORIZED, "Connection terminated by the app")
                conn.flush()
        return len(sockets)

    # -- order events from the bus (Open Dining dialect) -------------------------------

    def on_message(self, message: BusMessage) -> Awaitable[None] | None:
        if message.kind == "order":
            order = message.payload.get("order") or {}
            location = self.locations.get(order.get("location_id", ""))
            if location is None:
                return self._with_location(message)
            self._deliver_order(message.payload, location)
        elif message.kind == BUS_KIND:
            return self.cluster.on_remote(message.payload)
        elif message.kind == "location":
            loc = message.payload.get("location") or {}
            if loc.get("id"):
                self._keep_location(
                    LocationView(
                        loc["id"], loc.get("timezone") or "UTC", dict(loc.get("settings") or {})
                    )
                )
        return None

    async def _with_location(self, message: BusMessage) -> None:
        order = message.payload.get("order") or {}
        location = await self.location(order.get("location_id", ""))
        self._deliver_order(message.payload, location)

    async def location(self, location_id: str) -> LocationView:
        view = self.locations.get(location_id)
        if view is None:
            loc = await self.store.get_location(location_id)
            view = (
                LocationView(location_id)
                if loc is None
                else LocationView(loc.id, loc.timezone, dict(loc.settings))
            )
            self._keep_location(view)
        return view

    def _keep_location(self, view: LocationView) -> None:
        locations = self.locations
        if view.id not in locations and len(locations) >= LOCATION_ENTRIES:
            del locations[next(iter(locations))]  # reloaded from storage when needed
        locations[view.id] = view

    def _apps_for(self, channel_name: str, order: dict[str, Any]) -> list[str]:
        """Apps with subscribers on ``channel_name`` that may see this order."""
        out = []
        tenant_id, location_id = order.get("tenant_id") or "", order.get("location_id") or ""
        for app_id in self.by_name.get(channel_name, ()):
            state = self.apps.get(app_id)
            if state is None:
                continue
            if may_see_order(state.principal, tenant_id, location_id, None):
                out.append(app_id)
        return out

    def _deliver_order(self, payload: dict[str, Any], location: LocationView) -> None:
        order = payload.get("order") or {}
        order_id = order.get("id")
        if not order_id:
            return
        channel = opendining.ORDER_CHANNEL_PREFIX + order_id
        if channel not in self.scopes:
            self._remember_scope(
                channel,
                ChannelScope(order.get("tenant_id") or "", order.get("location_id") or "", None),
            )
        already = self.sent_seq.get(order_id, 0)
        for raw in payload.get("events") or []:
            record = EventRecord.from_dict(raw)
            if record.seq <= already:
                continue  # delivered by a catch-up already
            self._render_and_send(record, order, location)
        self._sent(order_id, order.get("location_id"), max(already, int(order.get("version") or 0)))

    def _sent(self, order_id: str, location_id: object, seq: int) -> None:
        """Record ``seq`` as rendered for ``order_id`` while someone listens to the order;
        otherwise forget it (memory stays bounded by what subscribers follow)."""
        by_name = self.by_name
        sent = self.sent_seq
        if (
            opendining.ORDER_CHANNEL_PREFIX + order_id in by_name
            or f"{opendining.LOCATION_CHANNEL_PREFIX}{location_id}" in by_name
        ):
            if order_id not in sent and len(sent) >= SENT_SEQ_ENTRIES:
                # Forgetting an order can at worst make a catch-up resend an event.
                del sent[next(iter(sent))]
            sent[order_id] = seq
        else:
            sent.pop(order_id, None)

    def _render_and_send(
        self, record: EventRecord, order: dict[str, Any], location: LocationView
    ) -> None:
        for out in opendining.render(record, order, location):
            frame = encode_event(out.event, out.channel, _json(out.data)).encode()
            if out.channel.startswith(opendining.ORDER_CHANNEL_PREFIX):
                self._remember(out.channel, record.seq, frame)
                if out.channel in self.by_name:
                    self.live_seq[out.channel] = record.seq
            apps = self._apps_for(out.channel, order)
            sockets = 0
            put = self.out.put
            for app_id in apps:
                channel = self.apps[app_id].channels.get(out.channel)
                if channel is not None:
                    targets = channel.live_targets(record.seq)
                    if targets:
                        sockets += len(targets)
                        put(targets, frame, None)
            if self.trace is not None:  # the console's "where did it go" (per channel)
                self.trace(order["id"], record.seq, "pusher", out.channel, sockets)

    def _remember(self, channel: str, seq: int, frame: bytes) -> None:
        self.last_state[channel] = (seq, frame)
        self.last_state.move_to_end(channel)
        while len(self.last_state) > LAST_STATE_ENTRIES:
            self.last_state.popitem(last=False)

    def _send_last_state(self, state: AppState, conn: PusherConnection, name: str) -> None:
        """Cache-channel style: the order channel's last event right after subscribing."""
        conn.flush()
        cached = self.last_state.get(name)
        scope = self.scopes.get(name)
        if cached is not None and scope is not None:
            # The cached frame is the order's: sent only to an app that may see the order
            # (checked when subscribing too; this keeps the cache path safe on its own).
            if may_see_order(state.principal, scope.tenant_id, scope.location_id, None):
                self._send_state(state, conn, name, *cached)
            return
        self._spawn(self._load_last_state(state, conn, name, self.live_seq.get(name)))

    async def _load_last_state(
        self, state: AppState, conn: PusherConnection, name: str, live_before: int | None
    ) -> None:
        order_id = name[len(opendining.ORDER_CHANNEL_PREFIX) :]
        order = await self.store.get_order(order_id)
        if order is None or not may_see_order(
            state.principal, order.tenant_id, order.location_id, None
        ):
            return
        location = await self.location(order.location_id)
        start = max(0, order.version - LAST_STATE_LOOKBACK)
        records = await self.store.list_events(order_id, start, LAST_STATE_LOOKBACK)
        order_dict = order.to_dict()
        last: tuple[int, bytes] | None = None
        for record in records:
            for out in opendining.render(record, order_dict, location):
                if out.channel == name:
                    frame = encode_event(out.event, out.channel, _json(out.data)).encode()
                    last = (record.seq, frame)
        delivered = self.sent_seq.get(order_id)
        if last is None:
            return
        if name not in self.last_state or self.last_state[name][0] < last[0]:
            self._remember(name, *last)
        # Never a duplicate: while storage was read, the live path may have sent this socket
        # the same event or a newer one (it was subscribed already), or that event is
        # committed and its bus message on the way to every subscriber, this one included.
        if self.live_seq.get(name) != live_before:
            return
        if delivered is not None and last[0] > delivered:
            return
        live = not conn.dead and conn.session is not None and conn.session.is_subscribed(name)
        if live and self.last_state[name][0] == last[0]:
            self._send_state(state, conn, name, *last)

    def _send_state(
        self, state: AppState, conn: PusherConnection, name: str, seq: int, frame: bytes
    ) -> None:
        """Send ``conn`` an order channel's state at ``seq`` outside the live path; the live
        path then skips this socket up to ``seq`` (no duplicate)."""
        conn.send_text(frame)
        channel = state.channels.get(name)
        if channel is not None and conn.socket_id in channel.subs:
            channel.floors[conn] = seq

    def on_lagged(self) -> Awaitable[None] | None:
        if not self.by_name:
            return None
        return self._catch_up(self.hub.lagged_since if self.hub is not None else None)

    async def _catch_up(self, lagged_since: float | None) -> None:
        """The bus dropped messages (since ``lagged_since``, unix seconds): replay what the
        subscribers missed from storage. The orders: those of watched order channels, and
        those of watched presence channels' locations changed since the gap began (a
        margin earlier). Per order, from the last seq rendered (``sent_seq``); an order never
        rendered: its events recorded in that window."""
        start = (lagged_since or time.time() - CATCH_UP_WINDOW) - CATCH_UP_MARGIN
        since = iso(datetime.fromtimestamp(start, UTC))
        order_ids: dict[str, None] = {}
        locations: dict[tuple[str, str], None] = {}
        for name, app_ids in list(self.by_name.items()):
            if name.startswith(opendining.ORDER_CHANNEL_PREFIX):
                order_ids[name[len(opendining.ORDER_CHANNEL_PREFIX) :]] = None
            elif name.startswith(opendining.LOCATION_CHANNEL_PREFIX):
                location_id = name[len(opendining.LOCATION_CHANNEL_PREFIX) :]
                for app_id in app_ids:
                    state = self.apps.get(app_id)
                    if state is not None:
                        locations[(state.app.tenant_id, location_id)] = None
        for tenant_id, location_id in locations:
            changed = await self.store.list_orders(
                tenant_id=tenant_id,
                location_ids=frozenset({location_id}),
                user_id=None,
                status=None,
                updated_since=since,
                limit=CATCH_UP_ORDERS,
            )
            for found in reversed(changed):  # oldest change first
                order_ids[found.id] = None
        sent = 0
        for order_id in order_ids:
            order = await self.store.get_order(order_id)
            if order is None:
                continue
            after = self.sent_seq.get(order_id)
            if after is not None and after >= order.version:
                continue
            location = await self.location(order.location_id)
            records = await self.store.list_events(order_id, after or 0, 1000)
            order_dict = order.to_dict()
            for record in records:
                if after is None and record.recorded_at < since:
                    continue
                self._render_and_send(record, order_dict, location)
                sent += 1
            # The events read may be newer than the order read just before them (a commit
            # in between): what was rendered is what the live path must now skip.
            last = max([order.version, *(r.seq for r in records)])
            self._sent(order_id, order.location_id, last)
        log.warning("bus lagged: Pusher caught up %d events from storage", sent)


def channel_is_presence(name: str) -> bool:
    return name.startswith("presence-")


def pusher_of(server: GatewayServer) -> PusherGateway:
    """The Pusher gateway installed on ``server`` (``runtime.gateway``)."""
    gateway = server.extensions.get("pusher")
    if not isinstance(gateway, PusherGateway):
        raise RuntimeError("the Pusher gateway is not installed on this server")
    return gateway
