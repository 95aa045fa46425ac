"""The STOMP-over-WebSocket gateway: ``/ws`` and ``/websocket`` on the gateway port.

A thin adapter. Bytes go through the sans-I/O :class:`~ordercast.protocols.stomp.StompSession`;
who may subscribe to what and what the messages look like is
:mod:`ordercast.dialects.orderingstack`; this module does only the I/O and the decisions that
need storage or a clock:

* **CONNECT / STOMP**: ``login`` = a user access token (``passcode`` empty, absent or the
  literal ``null``), or an app key with its secret as ``passcode``. Failed logins are counted
  per (client address, credential) by the directory's login limiter, shared with REST and
  the Pusher auth endpoints (``ORDERCAST_LOGIN_MAX_FAILURES`` within
  ``ORDERCAST_LOGIN_WINDOW_SECONDS``); a blocked pair gets ERROR ``too many failed logins``
  without its credentials being checked. A user session ends
  with ERROR ``access token expired`` at the token's ``exp`` (the session's timer).
* **SUBSCRIBE**: authorized by the dialect (deny by default), plus the order-ownership check
  for ``/order-changes/{user}/{order}`` and a fresh expiry check. ``x-since-seq: N`` on that
  destination replays the order's events after N from storage, then live: the subscription
  is registered for live messages *before* the backlog is read, live messages are held while
  replaying, and any live message with ``seq`` ≤ the last one sent is dropped. No gaps, no
  duplicates. That bookkeeping is kept per (subscription, order): a destination that
  carries many orders (``/kds/…``, the per-user destinations) tracks each order's seq.
* **Fan-out** (:meth:`StompGateway.on_message`, a hub consumer): each message is encoded once
  per destination (:func:`~ordercast.protocols.stomp.encode_message`) and spliced after each
  subscription's prefix, written with ``transport.send`` and no await; messages queued in
  one loop iteration for the same subscribers go out as one write per socket (the engine
  both gateways share: :mod:`ordercast.gateway.fanout`). A connection
  whose socket write buffer exceeds ``max_buffered_bytes`` is a slow consumer: it gets an
  ERROR and is closed (looked at once the transport has paused writing; its high-water
  mark is lowered to that bound when it is higher).
* Every ERROR frame (built by the session: ``message``, ``content-type``,
  ``content-length``) is written, then a WebSocket close frame, then the socket is closed
  once the write buffer has drained.
"""

from __future__ import annotations

import asyncio
import codecs
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from ordercast import logs, metrics
from ordercast.dialects import orderingstack as dialect
from ordercast.domain.access import (
    Access,
    AppPrincipal,
    UserPrincipal,
    location_access,
    may_see_order,
    tenant_access,
)
from ordercast.domain.events import EventRecord
from ordercast.domain.isotime import iso
from ordercast.domain.order import Order
from ordercast.errors import TRY_AGAIN_LATER, Forbidden, OrdercastError, RateLimited
from ordercast.fastjson import dumps_str
from ordercast.gateway.fanout import Fanout, SlowConsumers, frame_blob
from ordercast.gateway.hub import Hub
from ordercast.gateway.server import (
    GatewayServer,
    Upgrade,
    UpgradeRequest,
    accept,
    peer_address,
)
from ordercast.ports import BusMessage, Clock, Store
from ordercast.protocols.logins import basic_credential, bearer_credential
from ordercast.protocols.stomp import (
    AckReceived,
    ConnectRequested,
    DisconnectRequested,
    EncodedMessage,
    ErrorSent,
    NackReceived,
    SessionConfig,
    StompSession,
    SubscribeRequested,
    Subscription,
    UnsubscribeRequested,
    encode_message,
    select_subprotocol,
)
from ordercast.services.directory import Directory, plausible_id

if TYPE_CHECKING:
    import re

__all__ = ["PATHS", "StompConfig", "StompConnection", "StompGateway"]

log = logging.getLogger("ordercast.gateway.stomp")

PATHS = ("/ws", "/websocket")
TEXT = WSMsgType.TEXT
_NULL_PASSCODES = frozenset({"", "null"})
#: After a bus gap, orders changed this many seconds before it began are replayed too (a
#: connection can be dead a while before it is noticed).
CATCH_UP_MARGIN = 30.0
#: The window when the gap's start is unknown.
CATCH_UP_WINDOW = 300.0


@dataclass(frozen=True, slots=True)
class StompConfig:
    session: SessionConfig = field(
        default_factory=lambda: SessionConfig(max_frame_size=64 * 1024, max_subscriptions=64)
    )
    max_buffered_bytes: int = 1024 * 1024
    """Socket write buffer above which a connection is dropped as a slow consumer."""
    replay_limit: int = 100_000
    """Most events read to replay one order (the whole stream is folded)."""
    close_timeout: float = 5.0
    """Seconds a closing socket may take to flush before it is aborted."""
    max_tracked_orders: int = 4096
    """Orders whose last sent seq one subscription remembers (see ``_Sub.seqs``)."""
    snapshot_limit: int = 1000
    """Most open orders an ``x-snapshot: true`` subscription starts with (newest kept)."""
    catch_up_orders: int = 1000
    """Most changed orders replayed per destination after the bus missed messages."""


#: A message's place in its order's stream: (order id, seq); None for messages outside any
#: order stream (venue settings changes), which are always delivered.
Mark = tuple[str, int] | None


class _Sub:
    """One accepted subscription in the destination registry.

    ``seqs`` is the subscription's delivery bookkeeping, PER ORDER: order id -> the highest
    seq sent on this subscription. A destination may carry many orders (``/kds/…``, the
    per-user destinations), each with its own seq; a message is sent when its seq is above
    its own order's entry. Bounded by ``max_tracked_orders``: past it the oldest entry is
    forgotten, which can at worst let a replayed message repeat, never drop one."""

    __slots__ = (
        "active",
        "conn",
        "held",
        "limit",
        "prefix_tail",
        "route",
        "seqs",
        "sub",
        "transport",
        "viewer",
    )

    def __init__(
        self,
        conn: StompConnection,
        sub: Subscription,
        transport: WSTransport,
        limit: int,
        route: dialect.Route,
    ) -> None:
        self.conn = conn
        self.sub = sub
        self.route = route
        self.transport = transport
        # Hot path for ack:auto: prefix + message.tail (or raw_tail for STOMP 1.0).
        self.prefix_tail = sub.ack == "auto"
        self.seqs: dict[str, int] = {}
        self.limit = limit
        self.held: list[tuple[EncodedMessage, Mark]] | None = None
        self.active = True
        #: Deliver only messages about orders at locations this user may see (None: every
        #: message of the destination; the subscription itself was authorized for all).
        self.viewer: UserPrincipal | None = None

    def may_see_location(self, location_id: str) -> bool:
        """Whether messages about orders at ``location_id`` go to this subscription."""
        viewer = self.viewer
        return viewer is None or (
            location_access(viewer, location_id, self.route.tenant_id) is Access.ALLOWED
        )

    def locations(self) -> frozenset[str] | None:
        """The locations whose orders this subscription gets, for a storage query (None:
        every location of the destination)."""
        return None if self.viewer is None else self.viewer.location_ids

    def fresh(self, mark: Mark) -> bool:
        """Whether ``mark`` is new to this subscription; if so it is recorded as sent."""
        if mark is None:
            return True
        order_id, seq = mark
        seqs = self.seqs
        last = seqs.get(order_id)
        if last is None:
            if len(seqs) >= self.limit:
                del seqs[next(iter(seqs))]
        elif seq <= last:
            return False
        seqs[order_id] = seq
        return True


class _Plan:
    """A destination's subscribers as the fan-out loop wants them; rebuilt on every change
    (subscribe, unsubscribe, end of a replay), shared by the messages queued meanwhile.

    ``groups``: the ack:auto subscriptions not replaying, by (subscription prefix, escape):
    one spliced frame per group, then one write per socket with no further Python work
    than the seq check. ``others``: client-ack modes and subscriptions still replaying
    (:meth:`StompConnection.deliver`)."""

    __slots__ = ("groups", "others")

    def __init__(self, subs: Iterable[_Sub]) -> None:
        groups: dict[tuple[bytes, bool], list[_Sub]] = {}
        others: list[_Sub] = []
        for entry in subs:
            if entry.prefix_tail and entry.held is None and entry.conn.raw_frames:
                groups.setdefault((entry.sub.prefix, entry.sub.escape), []).append(entry)
            else:
                others.append(entry)
        self.groups = tuple((prefix, esc, tuple(es)) for (prefix, esc), es in groups.items())
        self.others = tuple(others)


class StompGateway:
    """Destination registry, fan-out consumer and connection factory. One per process.

    Collaborators: ``store`` (orders and events for replays, snapshots and catch-up;
    venues), ``directory`` (CONNECT logins, with its login limiter), ``clock`` (wall time:
    token expiry, the catch-up window), ``config``; the hub comes with the gateway server
    it is installed on (:meth:`install`)."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        clock: Clock,
        config: StompConfig | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self.hub: Hub | None = None
        self.server: GatewayServer | None = None  # set by install()
        self._config = config or StompConfig()
        #: Past ``max_buffered_bytes`` in a socket's write buffer: ERROR, then closed.
        self.slow = SlowConsumers(self._config.max_buffered_bytes)
        # destination -> subscriptions in subscription order (a dict as an ordered set): the
        # fan-out walks sockets roughly in the order their objects were allocated, as the
        # Pusher gateway does; a set's hash order scatters the walk over memory, which was
        # most of the per-socket loop's time (docs/benchmarks.md, "STOMP fan-out", third step).
        self.subscribers: dict[str, dict[_Sub, None]] = {}
        self.connections: set[StompConnection] = set()
        self._ids = itertools.count(1)
        self.delivered = 0
        #: The fan-out: messages for a destination's subscribers (a plan), written at the end
        #: of the loop iteration (runs for the same plan as one write per socket).
        self.out: Fanout[_Plan, EncodedMessage, Mark] = Fanout(self._send_one, self._send_run)
        #: destination -> plans: one for every subscriber (key None) or, on a destination
        #: with location-filtered subscribers (``_Sub.viewer``), one per order location.
        self._plans: dict[str, dict[str | None, _Plan]] = {}
        self._filtered: dict[str, int] = {}  # destination -> subscribers with a filter
        #: Called once per destination of an order event (order id, seq, "stomp",
        #: destination, subscriptions) when set (the console's order timeline).
        self.trace: Callable[[str, int, str, str, int], None] | None = None

    @property
    def config(self) -> StompConfig:
        return self._config

    @config.setter
    def config(self, config: StompConfig) -> None:
        self._config = config
        self.slow.max_buffer = config.max_buffered_bytes

    @property
    def dropped_slow(self) -> int:
        """Connections dropped as slow consumers."""
        return self.slow.dropped

    # -- wiring --------------------------------------------------------------------------------

    def install(self, server: GatewayServer) -> None:
        """Route ``/ws`` and ``/websocket`` on ``server`` here; consume its hub's messages."""
        self.server = server
        self.hub = server.hub
        server.extensions["stomp"] = self
        for path in PATHS:
            server.add_route(path, self.factory)
        server.hub.add_consumer(self)
        server.on_stop(self.stop)
        server.on_drain(self.stop)  # each client reconnects, to another node

    # -- routing (runs in picows' handshake callback) -----------------------------------------

    def factory(self, request: UpgradeRequest, match: re.Match[str] | None = None) -> Upgrade:
        subprotocol = select_subprotocol(request.subprotocols)
        conn = StompConnection(self, request.header("x-forwarded-for"))
        return accept(conn, subprotocol=subprotocol)

    # -- registry ------------------------------------------------------------------------------

    def register(self, entry: _Sub) -> None:
        destination = entry.sub.destination
        self.subscribers.setdefault(destination, {})[entry] = None
        self._plans.pop(destination, None)
        if entry.viewer is not None:
            self._filtered[destination] = self._filtered.get(destination, 0) + 1

    def replayed(self, entry: _Sub) -> None:
        """``entry`` finished its replay: it joins the fast path of the next plan."""
        self._plans.pop(entry.sub.destination, None)

    def unregister(self, entry: _Sub) -> None:
        entry.active = False
        self._plans.pop(entry.sub.destination, None)
        destination = entry.sub.destination
        subs = self.subscribers.get(destination)
        if subs is not None and subs.pop(entry, False) is None:
            if not subs:
                del self.subscribers[destination]
            if entry.viewer is not None:
                left = self._filtered[destination] - 1
                if left:
                    self._filtered[destination] = left
                else:
                    del self._filtered[destination]

    # -- fan-out (hub consumer) ----------------------------------------------------------------

    def on_message(self, message: BusMessage) -> None:
        if not self.subscribers:
            return
        if message.kind == "order":
            payload = message.payload
            events = [EventRecord.from_dict(e) for e in payload.get("events", [])]
            rendered = dialect.render_order_change(
                payload["order"], events, wanted=self.subscribers.__contains__, dumps=dumps_str
            )
        elif message.kind == "location":
            rendered = [
                m
                for m in dialect.render_location_change(message.payload["location"])
                if m.destination in self.subscribers
            ]
        else:
            return
        trace = self.trace if message.kind == "order" else None
        for out in rendered:
            self.publish(out)
            if trace is not None and out.seq is not None:
                subs = len(self.subscribers.get(out.destination, ()))
                trace(message.payload["order"]["id"], out.seq, "stomp", out.destination, subs)

    def publish(self, out: dialect.StompMessage) -> None:
        """Encode once and queue for every current subscriber of ``out.destination``; the
        queue is written at the end of this loop iteration (:mod:`ordercast.gateway.fanout`)."""
        destination = out.destination
        subs = self.subscribers.get(destination)
        if not subs:
            return
        plans = self._plans.get(destination)
        if plans is None:
            plans = self._plans[destination] = {}
        # Location-filtered subscribers (users' multi-order streams) get only orders at
        # the locations they may see: one plan per order location on such a destination.
        where = (out.location_id or "") if destination in self._filtered else None
        plan = plans.get(where)
        if plan is None:
            plan = plans[where] = _Plan(
                subs if where is None else [e for e in subs if e.may_see_location(where)]
            )
        encoded = encode_message(destination, out.message_id, out.body, headers=out.headers)
        self.out.put(plan, encoded, _mark(out))

    def _send_one(self, plan: _Plan, encoded: EncodedMessage, mark: Mark) -> None:
        """The fan-out's writer of one message. Subscribers with the same subscription id
        share one spliced frame."""
        # The hot loop: per socket only the liveness and seq checks, one transport.send
        # (picows frames it and tries the socket directly), and the slow-consumer check
        # only once the transport has paused writing (as the Pusher gateway does).
        sent = 0
        for prefix, escape, entries in plan.groups:
            data = prefix + (encoded.tail if escape else encoded.raw_tail)
            if mark is None:
                for entry in entries:
                    if entry.active:
                        entry.transport.send(TEXT, data)
                        sent += 1
                        if entry.conn.paused:
                            entry.conn.check_slow()
                continue
            order_id, seq = mark
            for entry in entries:
                if not entry.active:
                    continue
                # _Sub.fresh inlined: this loop runs once per socket per message.
                seqs = entry.seqs
                last = seqs.get(order_id)
                if last is None:
                    if len(seqs) >= entry.limit:
                        del seqs[next(iter(seqs))]
                elif seq <= last:
                    continue
                seqs[order_id] = seq
                entry.transport.send(TEXT, data)
                sent += 1
                if entry.conn.paused:
                    entry.conn.check_slow()
        self.delivered += sent
        for entry in plan.others:
            if entry.active:
                entry.conn.deliver(entry, encoded, mark)

    def _send_run(
        self, plan: _Plan, queued: list[tuple[_Plan, EncodedMessage, Mark, bool]]
    ) -> None:
        """The fan-out's writer of a run of messages to the same plan: consecutive WebSocket
        frames in ONE write per socket."""
        run = [(m, mark) for _, m, mark, _ in queued]
        sent = 0
        orders = tuple({mark[0]: None for _, mark in run if mark is not None})
        for prefix, escape, entries in plan.groups:
            # One blob of WebSocket frames per state of the run's orders in a subscription's
            # bookkeeping (normally one for all).
            blobs: dict[tuple[int | None, ...], tuple[bytes, dict[str, int], int]] = {}
            for entry in entries:
                if not entry.active:
                    continue
                seqs = entry.seqs
                state = tuple([seqs.get(o) for o in orders])
                blob = blobs.get(state)
                if blob is None:
                    blob = blobs[state] = _frames(
                        prefix, escape, run, dict(zip(orders, state, strict=True))
                    )
                data, new_seqs, frames = blob
                if not frames:
                    continue
                for order_id, seq in new_seqs.items():
                    if order_id not in seqs and len(seqs) >= entry.limit:
                        del seqs[next(iter(seqs))]
                    seqs[order_id] = seq
                conn = entry.conn
                entry.transport.underlying_transport.write(data)
                sent += frames
                if conn.paused:
                    conn.check_slow()
        self.delivered += sent
        for entry in plan.others:
            if entry.active:
                for encoded, mark in run:
                    entry.conn.deliver(entry, encoded, mark)

    def on_lagged(self) -> Awaitable[None] | None:
        if not self.subscribers:
            return None
        return self.catch_up(self.hub.lagged_since if self.hub is not None else None)

    async def catch_up(self, lagged_since: float | None) -> None:
        """The bus missed messages (since ``lagged_since``, unix seconds): send every
        subscription what it missed, from storage. Per destination, the orders changed
        since then (a margin earlier) are replayed; per subscription and order, what is
        above its seq bookkeeping goes out (an order it never got a message of: the events
        recorded in the window). The hub dispatches no newer live message meanwhile."""
        now = self.clock.now().timestamp()
        start = (lagged_since or now - CATCH_UP_WINDOW) - CATCH_UP_MARGIN
        since = iso(datetime.fromtimestamp(start, UTC))
        store = self.store
        streams: dict[str, list[EventRecord]] = {}
        sent = 0
        if self.out.pending:
            self.out.flush()
        for destination, subs in list(self.subscribers.items()):
            entries = [e for e in subs if e.active]
            if not entries:
                continue
            route = entries[0].route
            if route.kind == dialect.VENUE:
                continue  # settings changes: not an order stream
            if route.kind == dialect.ORDER:
                order_ids = [route.order_id or ""]
            else:
                changed = await store.list_orders(
                    tenant_id=route.tenant_id,
                    location_ids=frozenset({route.venue_id or ""})
                    if route.kind == dialect.KDS_VENUE
                    else None,
                    user_id=route.user_id if route.kind != dialect.KDS_VENUE else None,
                    status=None,
                    updated_since=since,
                    limit=self.config.catch_up_orders,
                )
                order_ids = [o.id for o in reversed(changed)]  # oldest change first
            for order_id in order_ids:
                events = streams.get(order_id)
                if events is None:
                    events = await store.list_events(order_id, 0, self.config.replay_limit)
                    streams[order_id] = events
                recorded = {e.seq: e.recorded_at for e in events}
                try:
                    messages = dialect.replay_order_messages(destination, events, 0)
                except ValueError:
                    continue  # a stream without order.created: nothing to rebuild
                for out in messages:
                    mark = _mark(out)
                    encoded = encode_message(
                        out.destination, out.message_id, out.body, headers=out.headers
                    )
                    for entry in entries:
                        if not entry.active:
                            continue
                        if (
                            out.seq is not None
                            and order_id not in entry.seqs
                            and recorded.get(out.seq, "") < since
                        ):
                            continue  # before the window, of an order it never got
                        before = self.delivered
                        entry.conn.deliver(entry, encoded, mark)
                        sent += self.delivered - before
        log.warning("bus lagged: STOMP caught up %d messages from storage", sent)

    async def stop(self) -> None:
        for conn in list(self.connections):
            conn.fail("server shutting down", "reconnect later", code=WSCloseCode.GOING_AWAY)


def _frames(
    prefix: bytes, escape: bool, run: list[tuple[EncodedMessage, Mark]], seqs: dict[str, int | None]
) -> tuple[bytes, dict[str, int], int]:
    """(consecutive WebSocket frames of the run's messages new after ``seqs`` (order id ->
    last seq sent, None = nothing yet), the orders' new last seqs, how many frames)."""
    payloads = []
    sent: dict[str, int] = {}
    for encoded, mark in run:
        if mark is not None:
            order_id, seq = mark
            last = seqs[order_id]
            if last is not None and seq <= last:
                continue
            seqs[order_id] = sent[order_id] = seq
        payloads.append(prefix + (encoded.tail if escape else encoded.raw_tail))
    return frame_blob(payloads), sent, len(payloads)


def _mark(out: dialect.StompMessage) -> Mark:
    return None if out.seq is None or out.order_id is None else (out.order_id, out.seq)


class StompConnection(WSListener):
    """One WebSocket connection: drives a StompSession, writes its output."""

    def __init__(self, gateway: StompGateway, forwarded_for: str | None = None) -> None:
        self.gateway = gateway
        self.forwarded_for = forwarded_for  # the upgrade's X-Forwarded-For (gateway port)
        self.loop = asyncio.get_running_loop()
        self.transport: WSTransport | None = None
        self.session = StompSession(gateway.config.session, now=self.loop.time())
        self.address = "unknown"
        self.principal: AppPrincipal | UserPrincipal | None = None
        self.conn_id = f"stomp-{id(self):x}"
        self.opened_at = time.monotonic()
        self.entries: dict[str, _Sub] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._text: codecs.BufferedIncrementalDecoder | None = None  # a fragmented text message
        self.paused = False
        """The socket's write buffer is over its high-water mark (checked for slow consumers)."""

    raw_frames = True
    """The transport is picows' and its ``underlying_transport`` takes raw WebSocket frames:
    the fan-out may write a run of messages as one blob. Connections on the HTTP port
    (:mod:`ordercast.gateway.asgi_stomp`) set False and get each message through
    ``transport.send``."""

    # -- picows callbacks ----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        server = self.gateway.server
        self.address = (
            server.client_address(transport, self.forwarded_for)
            if server is not None
            else peer_address(transport)
        )
        # Writing pauses at the slow-consumer bound at the latest, so the fan-out only
        # looks at the buffer size of paused sockets.
        raw = transport.underlying_transport
        limit = self.gateway.config.max_buffered_bytes
        try:
            if raw.get_write_buffer_limits()[1] > limit:
                raw.set_write_buffer_limits(high=limit)
        except (AttributeError, NotImplementedError):  # pragma: no cover - exotic transports
            pass
        self.gateway.connections.add(self)
        self._schedule()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            if self._closed:
                return  # closing: read and drop what the client pipelined (see _close)
            data = frame.get_payload_as_bytes()
            if not self._valid_text(msg_type, data, frame.fin):
                self.fail(
                    "invalid UTF-8",
                    "text frames must be UTF-8 (RFC 6455); send other bytes as binary frames",
                    code=WSCloseCode.INVALID_TEXT,
                )
                return
            self.receive(data)
        elif msg_type == WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def _valid_text(self, msg_type: WSMsgType, data: bytes, fin: bool) -> bool:
        """UTF-8 check of text messages (as the Pusher gateway does), across fragments."""
        if msg_type == WSMsgType.TEXT:
            if fin:
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    return False
                return True
            self._text = codecs.getincrementaldecoder("utf-8")()
        elif msg_type == WSMsgType.BINARY or self._text is None:
            self._text = None
            return True
        try:
            self._text.decode(data, final=fin)
        except UnicodeDecodeError:
            return False
        if fin:
            self._text = None
        return True

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closed = True
        principal = self.principal
        logs.ws_closed(
            "stomp",
            self.conn_id,
            app=principal.app_id if principal else None,
            tenant=principal.tenant_id if principal else None,
            seconds=time.monotonic() - self.opened_at,
            subscriptions=len(self.entries),
        )
        self.session.connection_lost()
        self.gateway.connections.discard(self)
        for entry in self.entries.values():
            self.gateway.unregister(entry)
        self.entries.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def receive(self, payload: bytes) -> None:
        """Bytes of one received message (a WebSocket frame, a SockJS message)."""
        self.session.receive_data(payload, self.loop.time())
        self._pump()

    # -- session driving -----------------------------------------------------------------------

    def _pump(self) -> None:
        """Handle the session's events, write its output, close if it is done."""
        if self._closed:
            return
        for event in self.session.events_received():
            if isinstance(event, ConnectRequested):
                self._spawn(self._connect(event))
            elif isinstance(event, SubscribeRequested):
                self._spawn(self._subscribe(event))
            elif isinstance(event, UnsubscribeRequested):
                entry = self.entries.pop(event.id, None)
                if entry is not None:
                    self.gateway.unregister(entry)
            elif isinstance(event, ErrorSent):
                log.info("STOMP ERROR to %s: %s (%s)", self.address, event.reason, event.message)
            elif isinstance(event, AckReceived | NackReceived | DisconnectRequested):
                pass
        self._flush()
        close = self.session.close_request
        if close is not None:
            self._close(WSCloseCode(close.code))
        else:
            self._schedule()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.gateway.out.pending:
            self.gateway.out.flush()  # queued fan-out first: keep this socket's order
        for data in self.session.data_to_send():
            transport.send(WSMsgType.TEXT, data)

    def _close(self, code: WSCloseCode) -> None:
        if self._closed:
            return
        self._closed = True
        self.gateway.connections.discard(self)
        for entry in self.entries.values():
            self.gateway.unregister(entry)
        self.entries.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        if transport is None:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(code)
        # The closing handshake: the socket stays open, reading and dropping whatever the
        # client pipelined, until the client answers with its close frame (on_ws_frame
        # then disconnects). Closing at once with unread input makes the kernel send a TCP
        # reset, and the client may lose the ERROR frame before reading it. A client that
        # never answers is aborted after close_timeout.
        self.loop.call_later(self.gateway.config.close_timeout, transport.disconnect, False)

    def fail(self, message: str, detail: str = "", *, code: WSCloseCode | None = None) -> None:
        """Send an ERROR frame and close (server-initiated)."""
        if self._closed:
            return
        code = code or WSCloseCode.POLICY_VIOLATION
        self.session.fail(code.value, message, detail)
        self._flush()
        self._close(code)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, TRY_AGAIN_LATER):
            self._storage_down(exc)
        elif exc is not None:
            log.error("STOMP connection task failed", exc_info=exc)
            self.fail("internal server error", "")

    def _storage_down(self, exc: BaseException) -> None:
        """The database could not answer a CONNECT or SUBSCRIBE: ERROR, then close 1013
        (try again later); the client reconnects and resumes by seq."""
        log.warning("STOMP: storage unavailable for %s: %s", self.address, exc)
        self.fail(
            "storage unavailable",
            "the database cannot be reached right now; reconnect later",
            code=WSCloseCode.TRY_AGAIN_LATER,
        )

    # -- timers --------------------------------------------------------------------------------

    def _schedule(self) -> None:
        deadline = self.session.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and not self._closed:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.session.on_timer(self.loop.time())
        self._pump()

    # -- decisions -----------------------------------------------------------------------------

    def _wall(self) -> float:
        return self.gateway.clock.now().timestamp()

    async def _connect(self, request: ConnectRequested) -> None:
        gateway = self.gateway
        try:
            principal = await self._authenticate(request)
        except RateLimited as exc:
            metrics.RATE_LIMITED.labels("stomp").inc()
            self.session.reject("too many failed logins", exc.detail)
            self._pump()
            return
        except TRY_AGAIN_LATER as exc:  # no login failure: nothing was checked
            self._storage_down(exc)
            return
        except OrdercastError as exc:
            metrics.AUTH_FAILURES.labels("stomp").inc()
            self.session.reject("authentication failed", exc.detail)
            self._pump()
            return
        if self._closed or self.session.close_request is not None:
            return
        self.principal = principal
        self.opened_at = time.monotonic()
        logs.ws_opened("stomp", self.conn_id, app=principal.app_id, tenant=principal.tenant_id)
        expires_at: float | None = None
        headers: list[tuple[str, str]] = []
        if isinstance(principal, UserPrincipal):
            expires_at = self.loop.time() + max(0.0, principal.expires_at - self._wall())
            headers.append(("user-name", principal.user_id))
        else:
            headers.append(("user-name", f"app:{principal.app_id}"))
        self.session.accept_connect(
            now=self.loop.time(),
            session_id=f"stomp-{next(gateway._ids)}",
            headers=headers,
            expires_at=expires_at,
            expiry_message="access token expired",
        )
        self._pump()

    async def _authenticate(self, request: ConnectRequested) -> AppPrincipal | UserPrincipal:
        login = request.login
        if not login:
            raise Forbidden(
                "CONNECT needs a login header: a user access token, or an app key "
                "with its secret as passcode"
            )
        directory = self.gateway.directory
        passcode = request.passcode
        if passcode is None or passcode in _NULL_PASSCODES:
            # A user's access token (JWT or legacy oct_), or an app's client_credentials JWT.
            return await directory.login(
                self.address,
                bearer_credential(login),
                lambda: directory.authenticate_user_token(login),
            )
        return await directory.login(
            self.address,
            basic_credential(login),
            lambda: directory.authenticate_basic(login, passcode),
        )

    async def _subscribe(self, request: SubscribeRequested) -> None:
        principal = self.principal
        session = self.session
        assert principal is not None
        if isinstance(principal, UserPrincipal) and principal.expires_at <= self._wall():
            session.reject("access token expired", "reconnect with a fresh access token")
            self._pump()
            return
        try:
            route = dialect.route(request.destination, principal)
        except Forbidden as exc:
            session.reject("forbidden", exc.detail)
            self._pump()
            return
        since: int | None = None
        raw_since = request.headers.get("x-since-seq")
        if raw_since is not None:
            if not route.resumable:
                session.reject(
                    "x-since-seq not supported here",
                    "x-since-seq resumes /order-changes/{user_uuid}/{order_id} only",
                )
                self._pump()
                return
            if not raw_since.isdigit() or len(raw_since) > 18:
                session.reject("invalid x-since-seq", "x-since-seq must be a sequence number ≥ 0")
                self._pump()
                return
            since = int(raw_since)
        if route.venue_in_tenant:
            location = await self.gateway.store.get_location(route.venue_id or "")
            if (
                location is None
                or tenant_access(principal, location.tenant_id) is not Access.ALLOWED
            ):
                session.reject(
                    "forbidden", f"not allowed to subscribe to {request.destination[:200]!r}"
                )
                self._pump()
                return
        snapshot = False
        raw_snapshot = request.headers.get("x-snapshot")
        if raw_snapshot is not None:
            if raw_snapshot not in ("true", "false"):
                session.reject("invalid x-snapshot", "x-snapshot must be true or false")
                self._pump()
                return
            snapshot = raw_snapshot == "true"
            if snapshot and (
                (
                    route.kind not in (dialect.VENUE,)
                    and dialect.snapshot_statuses(route.kind) is None
                )
                or since is not None
            ):
                session.reject(
                    "x-snapshot not supported here",
                    "x-snapshot starts /kds/{tenant}/{venue}, /order-changes/{tenant}/{user}, "
                    "/order-changes/{user}/{order} and /venue/{tenant}/{venue}, without "
                    "x-since-seq",
                )
                self._pump()
                return
        if route.kind == dialect.ORDER:
            order_id = route.order_id or ""
            order = await self.gateway.store.get_order(order_id) if plausible_id(order_id) else None
            if order is None or not may_see_order(
                principal, order.tenant_id, order.location_id, order.user_id
            ):
                session.reject(
                    "forbidden", f"not allowed to subscribe to {request.destination[:200]!r}"
                )
                self._pump()
                return
        if self._closed or session.close_request is not None:
            return
        sub = session.accept_subscription(request.id)
        if sub is None:
            self._pump()
            return
        assert self.transport is not None  # CONNECT and SUBSCRIBE came through it
        entry = _Sub(self, sub, self.transport, self.gateway.config.max_tracked_orders, route)
        if route.kind != dialect.ORDER and isinstance(principal, UserPrincipal):
            # A user's multi-order streams: only orders at locations the user may see.
            entry.viewer = principal
        if since is not None or snapshot:
            entry.held = []
        if since is not None:
            entry.seqs[route.order_id or ""] = since
        self.entries[sub.id] = entry
        self.gateway.register(entry)  # live first, then the backlog
        self._pump()  # RECEIPT, then frames that waited for this decision
        if since is not None:
            await self._replay(entry, route.order_id or "", since)
        elif snapshot:
            await self._snapshot(entry)

    async def _snapshot(self, entry: _Sub) -> None:
        """``x-snapshot: true``: the destination's current open orders (each as the message
        of its latest event, oldest change first), or the venue's settings; then the live
        messages held meanwhile, those not older than the snapshot's seq per order."""
        store = self.gateway.store
        route = entry.route
        out: list[dialect.StompMessage] = []
        if route.kind == dialect.VENUE:
            location = await store.get_location(route.venue_id or "")
            principal = self.principal
            assert principal is not None  # subscribed after CONNECT
            if (
                location is not None
                and tenant_access(principal, location.tenant_id) is Access.ALLOWED
            ):
                out.extend(
                    dialect.StompMessage(
                        m.destination, m.message_id, m.body, (*m.headers, dialect.SNAPSHOT_HEADER)
                    )
                    for m in dialect.render_location_change(location.to_dict())
                    if m.destination == entry.sub.destination
                )
        else:
            orders = []
            if route.kind == dialect.ORDER:
                order = await store.get_order(route.order_id or "")
                statuses = dialect.snapshot_statuses(route.kind) or ()
                if order is not None and order.status in statuses:
                    orders.append(order)
            else:
                for status in dialect.snapshot_statuses(route.kind) or ():
                    orders += await store.list_orders(
                        tenant_id=route.tenant_id,
                        # A user's streams: only at the locations the subscriber may use.
                        location_ids=frozenset({route.venue_id or ""})
                        if route.kind == dialect.KDS_VENUE
                        else entry.locations(),
                        user_id=route.user_id if route.kind != dialect.KDS_VENUE else None,
                        status=status,
                        updated_since=None,
                        limit=self.gateway.config.snapshot_limit,
                    )
                # One query per state: an order that moved meanwhile may be in two answers.
                newest: dict[str, Order] = {}
                for found in orders:
                    seen = newest.get(found.id)
                    if seen is None or found.version > seen.version:
                        newest[found.id] = found
                orders = sorted(newest.values(), key=lambda o: (o.updated_at, o.id))
            for order in orders[-self.gateway.config.snapshot_limit :]:
                last = await store.list_events(order.id, order.version - 1, 1)
                if not last:
                    continue
                message = dialect.snapshot_message(entry.sub.destination, order.to_dict(), last[0])
                if message is not None:
                    out.append(message)
        if not entry.active or self._closed:
            return
        if self.gateway.out.pending:
            self.gateway.out.flush()  # live messages queued so far go to entry.held
        for message in out:
            encoded = encode_message(
                message.destination, message.message_id, message.body, headers=message.headers
            )
            self._write(entry, encoded, _mark(message))
            if self._closed:
                return
        held, entry.held = entry.held or [], None
        self.gateway.replayed(entry)
        for encoded, mark in held:
            self.deliver(entry, encoded, mark)

    async def _replay(self, entry: _Sub, order_id: str, since: int) -> None:
        events = await self.gateway.store.list_events(order_id, 0, self.gateway.config.replay_limit)
        if not entry.active or self._closed:
            return
        if self.gateway.out.pending:
            self.gateway.out.flush()  # live messages queued so far go to entry.held
        for out in dialect.replay_order_messages(entry.sub.destination, events, since):
            encoded = encode_message(out.destination, out.message_id, out.body, headers=out.headers)
            self._write(entry, encoded, _mark(out))
            if self._closed:
                return
        held, entry.held = entry.held or [], None
        self.gateway.replayed(entry)
        for encoded, mark in held:
            self.deliver(entry, encoded, mark)

    # -- fan-out -------------------------------------------------------------------------------

    def deliver(self, entry: _Sub, message: EncodedMessage, mark: Mark) -> None:
        if entry.held is not None:
            entry.held.append((message, mark))
            if len(entry.held) > 10_000:
                self.fail("slow consumer", "too many messages while replaying")
            return
        self._write(entry, message, mark)

    def _write(self, entry: _Sub, message: EncodedMessage, mark: Mark) -> None:
        """Write one MESSAGE frame unless ``mark`` was sent on this subscription already."""
        transport = self.transport
        if transport is None or self._closed or not entry.fresh(mark):
            return
        sub = entry.sub
        if entry.prefix_tail:
            data = sub.prefix + (message.tail if sub.escape else message.raw_tail)
        else:
            frame = self.session.message_frame(sub.id, message)
            if frame is None:
                self._pump()  # e.g. too many unacknowledged messages: ERROR and close
                return
            data = frame
        self._send(transport, data)

    def _send(self, transport: WSTransport, data: bytes) -> None:
        """Write one MESSAGE frame; past the buffer bound the subscriber is dropped."""
        transport.send(TEXT, data)
        self.gateway.delivered += 1
        self.check_slow()

    def check_slow(self) -> None:
        """Past ``max_buffered_bytes`` of unsent output the connection is a slow consumer:
        ERROR, then closed."""
        transport = self.transport
        if (
            transport is not None
            and not self._closed
            and self.gateway.slow.too_slow(transport.underlying_transport)
        ):
            self.fail(
                "slow consumer",
                "the connection could not keep up with its messages; reconnect and resume",
                code=WSCloseCode.TRY_AGAIN_LATER,
            )
