"""The Open Dining order bridge of the Pusher gateway: order events from the bus to the
``private-o-{order_id}`` and ``presence-r-{location_id}`` channels.

* **Live** (:meth:`OrderChannels.on_order`, per bus message): each event is rendered by
  :mod:`ordercast.dialects.opendining`, each frame encoded once, and queued for the channel's
  subscribers in every app of the order's tenant that may see the order
  (:func:`~ordercast.domain.access.may_see_order`).
* **Who may subscribe**: these channels belong to an order or a restaurant; a valid channel
  signature only says the app's own key signed the name, so the bridge admits a subscription
  only when the app may see that order or location (:mod:`ordercast.domain.access`):
  another tenant's order reads as not found (404), an ungranted location is refused (403),
  before a byte of the order is sent. Whose a channel is comes from the bus or storage and
  is remembered (bounded).
* **Last state**: a socket that subscribes to an order channel gets the order's last event
  at once, from a bounded cache of the last frame per order channel, or rendered from
  storage; the cache is checked against the access rules on its own, and its per-socket
  bookkeeping (:attr:`Channel.floors <ordercast.gateway.pusher.registry.Channel.floors>`)
  keeps the live path from sending it twice.
* **Catch-up** (:meth:`OrderChannels.catch_up`): after the bus dropped messages, what the
  listened-to orders missed is rendered from storage, per order from the last seq rendered.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ordercast.dialects import opendining
from ordercast.dialects.opendining import LocationView
from ordercast.domain.access import Access, location_access, may_see_order, order_access
from ordercast.domain.events import EventRecord
from ordercast.domain.isotime import iso
from ordercast.errors import TRY_AGAIN_LATER
from ordercast.fastjson import dumps_str
from ordercast.gateway.pusher.connection import PusherConnection
from ordercast.gateway.pusher.registry import AppState, ChannelRegistry, Spawn
from ordercast.ports import BusMessage, Clock, Store
from ordercast.protocols.pusher import SubscribeRequested, encode_event
from ordercast.services.directory import plausible_id

__all__ = ["GUARDED_PREFIXES", "LAST_STATE_ENTRIES", "LOCATION_ENTRIES", "OrderChannels"]

log = logging.getLogger("ordercast.gateway.pusher")

LAST_STATE_ENTRIES: Final = 10_000
#: Bounds of the other per-order / per-name maps (oldest entry forgotten past them): seqs
#: rendered for listened-to orders, location views.
SENT_SEQ_ENTRIES: Final = 100_000
LOCATION_ENTRIES: Final = 10_000
#: How far back to look for an order channel's last event when it is not cached.
LAST_STATE_LOOKBACK: Final = 50
#: After a bus gap: orders changed this many seconds before it began are replayed too, the
#: window when its start is unknown, and the most orders replayed per presence channel.
CATCH_UP_MARGIN: Final = 30.0
CATCH_UP_WINDOW: Final = 300.0
CATCH_UP_ORDERS: Final = 1000

ORDER_PREFIX: Final = opendining.ORDER_CHANNEL_PREFIX
LOCATION_PREFIX: Final = opendining.LOCATION_CHANNEL_PREFIX
#: Channels whose subscription is checked against the app's grants (order, restaurant).
GUARDED_PREFIXES: Final = (ORDER_PREFIX, LOCATION_PREFIX)


@dataclass(frozen=True, slots=True)
class ChannelScope:
    """Whose an order or restaurant channel is: what the access rules need to know."""

    tenant_id: str
    location_id: str
    user_id: str | None


UNKNOWN_SCOPE: Final = ChannelScope("", "", None)


class OrderChannels:
    """The owner of the Open Dining channels in the registry, and the hub's order events."""

    prefixes: Final = GUARDED_PREFIXES

    def __init__(self, store: Store, registry: ChannelRegistry, clock: Clock, spawn: Spawn) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.spawn = spawn
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
        #: Called once per rendered channel of an order event (order id, seq, "pusher",
        #: channel, subscribed sockets) when set (the console's order timeline).
        self.trace: Callable[[str, int, str, str, int], None] | None = None

    # -- subscriptions (ChannelOwner) ---------------------------------------------------

    def admit(self, state: AppState, conn: PusherConnection, req: SubscribeRequested) -> bool:
        """A signed subscription. A valid signature says the app's own key signed it — any
        app may sign any name with its own secret —, so the order and restaurant channels
        are also checked against the app's grants (:mod:`ordercast.domain.access`) before
        anything is sent: another tenant's or location's order gets
        ``pusher:subscription_error``, never a byte of the order."""
        name = req.channel
        scope = self.scopes.get(name)
        if scope is None:
            self.spawn(self._look_up_and_subscribe(state, conn, req))
            return False
        return self._may_join(state, conn, name, scope)

    async def _look_up_and_subscribe(
        self, state: AppState, conn: PusherConnection, req: SubscribeRequested
    ) -> None:
        name = req.channel
        try:
            scope = await self._scope(name)
        except TRY_AGAIN_LATER as exc:
            log.warning("pusher: storage unavailable: %s", exc)
            scope = None
        session = conn.session
        if conn.dead or session is None or name not in session.channels:
            return  # gone or unsubscribed meanwhile
        if scope is None:  # refused for now: the client may subscribe again
            session.subscription_error(name, "ServerError", "storage unavailable, retry", 503)
            conn.flush()
            return
        if session.is_subscribed(name):
            return
        if self._may_join(state, conn, name, scope):
            self.registry.join(state, conn, req)
        conn.flush()

    async def _scope(self, name: str) -> ChannelScope:
        """Who a guarded channel belongs to, from storage (remembered, bounded)."""
        scope = self.scopes.get(name)
        if scope is not None:
            return scope
        if name.startswith(ORDER_PREFIX):
            order_id = name[len(ORDER_PREFIX) :]
            order = await self.store.get_order(order_id) if plausible_id(order_id) else None
            if order is None:
                return UNKNOWN_SCOPE  # not remembered: the order may be created later
            scope = ChannelScope(order.tenant_id, order.location_id, order.user_id)
        else:
            location_id = name[len(LOCATION_PREFIX) :]
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
        elif name.startswith(ORDER_PREFIX):
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

    def joined(self, state: AppState, conn: PusherConnection, name: str) -> None:
        if name.startswith(ORDER_PREFIX):
            self._send_last_state(state, conn, name)

    def vacated(self, name: str) -> None:
        self.live_seq.pop(name, None)
        if name.startswith(ORDER_PREFIX):
            self.sent_seq.pop(name[len(ORDER_PREFIX) :], None)

    # -- order events from the bus (Open Dining dialect) -------------------------------

    def on_order(self, message: BusMessage) -> Awaitable[None] | None:
        order = message.payload.get("order") or {}
        location = self.locations.get(order.get("location_id", ""))
        if location is None:
            return self._with_location(message)
        self._deliver_order(message.payload, location)
        return None

    def on_location(self, payload: dict[str, Any]) -> None:
        loc = payload.get("location") or {}
        if loc.get("id"):
            self._keep_location(
                LocationView(
                    loc["id"], loc.get("timezone") or "UTC", dict(loc.get("settings") or {})
                )
            )

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
        apps = self.registry.apps
        for app_id in self.registry.by_name.get(channel_name, ()):
            state = apps.get(app_id)
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
        channel = ORDER_PREFIX + order_id
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
        by_name = self.registry.by_name
        sent = self.sent_seq
        if ORDER_PREFIX + order_id in by_name or f"{LOCATION_PREFIX}{location_id}" in by_name:
            if order_id not in sent and len(sent) >= SENT_SEQ_ENTRIES:
                # Forgetting an order can at worst make a catch-up resend an event.
                del sent[next(iter(sent))]
            sent[order_id] = seq
        else:
            sent.pop(order_id, None)

    def _render_and_send(
        self, record: EventRecord, order: dict[str, Any], location: LocationView
    ) -> None:
        apps = self.registry.apps
        put = self.registry.out.put
        for out in opendining.render(record, order, location):
            frame = encode_event(out.event, out.channel, dumps_str(out.data)).encode()
            if out.channel.startswith(ORDER_PREFIX):
                self._remember(out.channel, record.seq, frame)
                if out.channel in self.registry.by_name:
                    self.live_seq[out.channel] = record.seq
            sockets = 0
            for app_id in self._apps_for(out.channel, order):
                channel = apps[app_id].channels.get(out.channel)
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
        self.spawn(self._load_last_state(state, conn, name, self.live_seq.get(name)))

    async def _load_last_state(
        self, state: AppState, conn: PusherConnection, name: str, live_before: int | None
    ) -> None:
        order_id = name[len(ORDER_PREFIX) :]
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
                    frame = encode_event(out.event, out.channel, dumps_str(out.data)).encode()
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

    # -- after a bus gap ---------------------------------------------------------------

    async def catch_up(self, lagged_since: float | None) -> None:
        """The bus dropped messages (since ``lagged_since``, unix seconds): replay what the
        subscribers missed from storage. The orders: those of watched order channels, and
        those of watched presence channels' locations changed since the gap began (a
        margin earlier). Per order, from the last seq rendered (``sent_seq``); an order never
        rendered: its events recorded in that window."""
        now = self.clock.now().timestamp()
        start = (lagged_since or now - CATCH_UP_WINDOW) - CATCH_UP_MARGIN
        since = iso(datetime.fromtimestamp(start, UTC))
        order_ids: dict[str, None] = {}
        locations: dict[tuple[str, str], None] = {}
        apps = self.registry.apps
        for name, app_ids in list(self.registry.by_name.items()):
            if name.startswith(ORDER_PREFIX):
                order_ids[name[len(ORDER_PREFIX) :]] = None
            elif name.startswith(LOCATION_PREFIX):
                location_id = name[len(LOCATION_PREFIX) :]
                for app_id in app_ids:
                    state = apps.get(app_id)
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
