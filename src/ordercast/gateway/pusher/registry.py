"""The Pusher gateway's registry on this node: apps, channels, presence rosters and users,
kept per app (``/app/{key}``: one app never sees another's channels), and what the HTTP API
and the cluster do with them.

* **Apps** (:class:`AppState`): looked up by key or id in storage and cached for
  :data:`APP_CACHE_SECONDS`; an app changed through the API is used at once
  (:meth:`ChannelRegistry.refresh_app`). The state carries the app's session config and its
  principal for the access rules.
* **Channels** (:class:`Channel`): the sockets subscribed to each channel of each app, and
  which apps have a channel of a given name (:attr:`ChannelRegistry.by_name`). A frame for a
  channel goes to the fan-out engine (:class:`~ordercast.gateway.pusher.connection.PusherFanout`)
  with the channel's snapshot of subscribers.
* **Owned channels**: subscriptions to the channels of a :class:`ChannelOwner` (the Open
  Dining order channels, :mod:`ordercast.gateway.pusher.orders`) are admitted by the owner
  first, which is told when a socket joined and when no app listens any more.
* **Presence**: the local roster per app; a join is confirmed by the cluster
  (:mod:`ordercast.gateway.cluster`) against the cluster-wide roster.
* **Server webhooks** go to :attr:`ChannelRegistry.webhooks`: ``client_event`` from here;
  ``channel_occupied``/``channel_vacated`` and ``member_added``/``member_removed`` are decided
  cluster-wide by the cluster, which writes them through the same sink.
* **The HTTP API**: trigger (and the cache channels' last frame), channel info, terminating a
  user's connections.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ordercast.domain.access import AppPrincipal
from ordercast.gateway.cluster import PusherCluster
from ordercast.gateway.pusher.connection import PusherConnection, PusherFanout, Targets
from ordercast.ports import App, Store
from ordercast.protocols.pusher import (
    ChannelKind,
    ClientEventReceived,
    CloseCode,
    JoinResult,
    PresenceRoster,
    SessionConfig,
    SubscribeRequested,
    encode_event,
    is_cache_channel,
)
from ordercast.protocols.pusher.httpapi import TriggerEvent
from ordercast.services.directory import app_principal, plausible_id

__all__ = [
    "AppState",
    "Channel",
    "ChannelOwner",
    "ChannelRegistry",
    "WebhookSink",
    "channel_is_presence",
]

APP_CACHE_SECONDS: Final = 30.0
#: Most cache channels whose last frame is kept per app (the oldest is forgotten past it).
CACHE_CHANNEL_ENTRIES: Final = 10_000

#: ``async (app, events)``: Pusher server webhooks (channel_occupied, …) for one app.
WebhookSink = Callable[[App, list[dict[str, Any]]], Awaitable[None]]
#: Runs a coroutine in the background (the gateway keeps and cancels the tasks).
Spawn = Callable[[Awaitable[Any]], None]


def channel_is_presence(name: str) -> bool:
    return name.startswith("presence-")


@dataclass(slots=True)
class Channel:
    name: str
    subs: dict[str, PusherConnection] = field(default_factory=dict)
    _targets: Targets | None = None
    #: Per-subscriber bookkeeping of an order channel: a socket sent the order's last state
    #: from storage -> that event's seq. The live path skips the socket for seqs up to it
    #: (the same event's bus message may still be on its way) and then forgets it.
    floors: dict[PusherConnection, int] = field(default_factory=dict)

    @property
    def targets(self) -> Targets:
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

    def live_targets(self, seq: int) -> Targets:
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


class ChannelOwner(Protocol):
    """Channels whose subscriptions another part of the gateway decides and follows."""

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The channel names it owns start with one of these."""

    def admit(self, state: AppState, conn: PusherConnection, req: SubscribeRequested) -> bool:
        """True: ``conn`` joins now. False: refused (the session was told why), or decided
        later (the owner then calls :meth:`ChannelRegistry.join` itself)."""

    def joined(self, state: AppState, conn: PusherConnection, name: str) -> None:
        """``conn`` subscribed to ``name`` and was told so."""

    def vacated(self, name: str) -> None:
        """No socket of any app on this node listens to ``name`` any more."""


class ChannelRegistry:
    """Apps, channels, presence and users of every app on this node."""

    #: Cluster-wide counts, presence and relays (gateway/cluster.py): it registers itself
    #: here when the gateway builds it (one node in-process, several through Redis).
    cluster: PusherCluster

    def __init__(
        self,
        store: Store,
        out: PusherFanout,
        spawn: Spawn,
        *,
        activity_timeout: int = 120,
        pong_timeout: float = 30.0,
        max_presence_members: int = 100,
        webhooks: WebhookSink | None = None,
    ) -> None:
        self.store = store
        self.out = out
        self.spawn = spawn
        self.activity_timeout = activity_timeout
        self.pong_timeout = pong_timeout
        self.max_presence_members = max_presence_members
        self.webhooks = webhooks
        self.apps: dict[str, AppState] = {}  # by app id
        self._keys: dict[str, str] = {}  # app key -> app id
        self.by_name: dict[str, set[str]] = {}  # channel name -> app ids with subscribers
        self.connections: dict[str, PusherConnection] = {}  # by socket id
        self.owner: ChannelOwner | None = None

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

    # -- subscriptions -----------------------------------------------------------------

    def channel(self, state: AppState, name: str) -> Channel:
        """The local channel (created on its first local subscriber)."""
        channel = state.channels.get(name)
        if channel is None:
            channel = state.channels[name] = Channel(name)
            self.by_name.setdefault(name, set()).add(state.app.id)
        return channel

    def subscribe(self, state: AppState, conn: PusherConnection, req: SubscribeRequested) -> None:
        """A signed subscription (the session checked the signature): an owned channel is
        admitted by its owner first."""
        owner = self.owner
        if (
            owner is not None
            and req.channel.startswith(owner.prefixes)
            and not owner.admit(state, conn, req)
        ):
            return
        self.join(state, conn, req)

    def join(self, state: AppState, conn: PusherConnection, req: SubscribeRequested) -> None:
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
            self.leave(state, conn, name)
            return
        if req.is_cache:
            cached = state.cache.get(name)
            if cached is not None:
                conn.flush()  # subscription_succeeded first, then the cached event
                conn.send_text(cached)
            else:
                session.cache_miss(name)
        elif self.owner is not None and name.startswith(self.owner.prefixes):
            self.owner.joined(state, conn, name)

    def leave(self, state: AppState, conn: PusherConnection, name: str) -> None:
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
                    if self.owner is not None:
                        self.owner.vacated(name)

    def signed_in(self, state: AppState, conn: PusherConnection, user_id: str) -> None:
        state.users.setdefault(user_id, set()).add(conn)

    def signed_out(self, state: AppState, conn: PusherConnection, user_id: str) -> None:
        sockets = state.users.get(user_id)
        if sockets is not None:
            sockets.discard(conn)
            if not sockets:
                del state.users[user_id]

    # -- frames to channels --------------------------------------------------------------

    def fanout(
        self, channel: Channel, frame: bytes, exclude: PusherConnection | None = None
    ) -> None:
        """Queue one encoded frame for every current subscriber of ``channel``, written at
        the end of this loop iteration (a frame that skips a socket is written alone)."""
        targets = channel.targets
        if targets:
            self.out.put(targets, frame, exclude, exclude is not None)

    def client_event(
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
        self.webhook(state, hook)

    def webhook(self, state: AppState, event: dict[str, Any]) -> None:
        """Emit one server webhook of ``state``'s app (no-op without a sink)."""
        if self.webhooks is not None:
            self.spawn(self.webhooks(state.app, [event]))

    # -- the HTTP API ------------------------------------------------------------------

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
