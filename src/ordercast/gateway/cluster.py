"""The Pusher gateway as one node of a cluster: what a client or SDK sees is the same whichever
node it reaches.

:class:`PusherCluster` sits beside the Pusher gateway's registry of this node's apps and channels
(:class:`~ordercast.gateway.pusher.registry.ChannelRegistry`) and owns everything cluster-wide:

* **Counts and presence** in a :class:`~ordercast.cluster.Registry` (Redis with a
  ``redis://`` bus, in-process with ``memory://``). The gateway keeps its local channels and
  local roster for fan-out; each subscribe/unsubscribe and each node-level presence join/leave
  is also queued here and run against the registry **in order** (one worker per node), so a
  channel's ``channel_occupied``/``channel_vacated`` and a user's ``member_added``/
  ``member_removed`` are decided once for the cluster, by the node whose change made the
  transition — and only that node writes the webhook.
* **Relays**: HTTP API triggers (and batch triggers, ``sendToUser``), client events,
  presence member frames and ``terminate_connections`` are fanned out locally at once and
  sent to the other nodes on the bus as ``BusMessage("pusher", {"node", "ops"})``; what is
  queued during one loop iteration goes out as one message. A node ignores its own.
* **Liveness**: every ``heartbeat`` seconds the node beats (with its connection count) and
  reaps nodes silent for more than ``node_timeout`` seconds: their members are removed with
  ``member_removed`` to every node and their channels vacated, within
  ``node_timeout + heartbeat`` seconds of the last beat (12 s with the defaults). A node
  that finds it was reaped (a long pause) closes its sockets with 4200 — clients reconnect and
  subscribe afresh — and registers again.

The console and the HTTP API read the cluster through :meth:`channels`,
:meth:`channel_info`, :meth:`members` and :meth:`nodes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from ordercast.cluster import (
    ADDED,
    FULL,
    GONE,
    OCCUPIED,
    STALE,
    VACATED,
    Departure,
    Joined,
    NodeInfo,
    Registry,
)
from ordercast.ports import Bus, BusMessage
from ordercast.protocols.pusher import (
    CloseCode,
    SubscribeRequested,
    encode_event,
    encode_member_added,
    encode_member_removed,
    is_cache_channel,
)
from ordercast.protocols.pusher.httpapi import TriggerEvent

# The Pusher gateway's own objects (gateway/pusher/registry.py, connection.py). The registry
# imports this module (its default one-node cluster), so they are not imported here: no
# import cycle, even for type checking.
AppState = Any
PusherConnection = Any
ChannelRegistry = Any

__all__ = ["BUS_KIND", "PusherCluster", "new_node_id"]

log = logging.getLogger("ordercast.gateway.cluster")

BUS_KIND: Final = "pusher"

Op = Callable[[], Awaitable[Any]]
Done = Callable[[Any], None]


async def _nothing() -> None:
    return None


def new_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class PusherCluster:
    def __init__(
        self,
        local: ChannelRegistry,
        registry: Registry,
        bus: Bus | None,
        *,
        heartbeat: float = 2.0,
        node_timeout: float = 10.0,
    ) -> None:
        #: This node's apps, channels and sockets (the Pusher gateway's registry).
        self.local = local
        self.registry = registry
        self.bus = bus
        self.node_id = registry.node_id
        self.heartbeat = heartbeat
        self.node_timeout = node_timeout
        self._ops: deque[tuple[Op, Done | None]] = deque()
        self._ops_wake: asyncio.Event | None = None
        self._relay: list[dict[str, Any]] = []
        self._relay_waiters: list[asyncio.Future[None]] = []
        self._relay_wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._resetting = False
        #: Run when a dead node was reaped (here or on another node): the runtime points it
        #: at the hub's catch-up (every gateway replays from storage what it may have missed).
        self.on_node_lost: Callable[[], Awaitable[None]] = _nothing
        local.cluster = self

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        self._ops_wake, self._relay_wake = asyncio.Event(), asyncio.Event()
        await self.registry.register(time.time(), self._info())
        self._tasks = [
            asyncio.create_task(self._run_ops(), name="cluster-ops"),
            asyncio.create_task(self._run_relay(), name="cluster-relay"),
            asyncio.create_task(self._run_beats(), name="cluster-beats"),
        ]
        if self._ops:
            self._ops_wake.set()

    async def stop(self) -> None:
        """After the gateway closed its sockets: finish the queued changes, then take this
        node out of the registry (what is left is reported like a dead node's)."""
        if not self._tasks:
            return
        for _ in range(200):
            if not self._ops and not self._relay:
                break
            await asyncio.sleep(0.01)
        with contextlib.suppress(Exception):
            reaped = await self.registry.reap(0.0, node_id=self.node_id)
            await self._departed(reaped.departures)
            await self._flush_relay_now()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for waiter in self._relay_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._relay_waiters = []
        await self.registry.close()

    def _info(self) -> dict[str, Any]:
        # "apps": the node's Pusher connections per app, for the console's connections page
        apps = {
            app_id: state.connections
            for app_id, state in list(self.local.apps.items())
            if state.connections
        }
        return {"connections": len(self.local.connections), "pid": os.getpid(), "apps": apps}

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # -- the ordered registry queue -----------------------------------------------------------

    def _submit(self, op: Op, done: Done | None = None) -> None:
        self._ops.append((op, done))
        if self._ops_wake is not None:
            self._ops_wake.set()

    async def _run_ops(self) -> None:
        assert self._ops_wake is not None
        while True:
            await self._ops_wake.wait()
            self._ops_wake.clear()
            while self._ops:
                op, done = self._ops[0]
                try:
                    result = await op()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("cluster registry call failed; retrying")
                    await asyncio.sleep(0.5)
                    continue
                self._ops.popleft()
                if done is not None:
                    try:
                        done(result)
                    except Exception:
                        log.exception("cluster callback failed")

    # -- gateway hooks (synchronous; never await on the socket path) -------------------------

    def subscribed(
        self, state: AppState, name: str, then: Callable[[], None] | None = None
    ) -> None:
        app_id = state.app.id

        def done(result: int) -> None:
            self._counted(state, name, result)
            if then is not None:
                then()

        self._submit(lambda: self.registry.count(app_id, name, +1), done)

    def unsubscribed(self, state: AppState, name: str) -> None:
        app_id = state.app.id
        self._submit(
            lambda: self.registry.count(app_id, name, -1),
            lambda r: self._counted(state, name, r),
        )

    def _counted(self, state: AppState, name: str, result: int) -> None:
        if result == OCCUPIED:
            self._webhook(state, {"name": "channel_occupied", "channel": name})
        elif result == VACATED:
            self._webhook(state, {"name": "channel_vacated", "channel": name})
        elif result == STALE:
            self._reset()

    def join(
        self, state: AppState, conn: PusherConnection, req: SubscribeRequested, first_local: bool
    ) -> None:
        """A presence subscription: ask the registry, then confirm it with the cluster's
        roster (or refuse it when the channel is full)."""
        assert req.member is not None
        member = req.member
        app_id = state.app.id
        limit = self.local.max_presence_members
        self._submit(
            lambda: self.registry.join(
                app_id, req.channel, member.user_id, member.user_info, first_local, limit
            ),
            lambda joined: self._joined(state, conn, req, joined),
        )

    def _joined(
        self, state: AppState, conn: PusherConnection, req: SubscribeRequested, joined: Joined
    ) -> None:
        gw = self.local
        name = req.channel
        session = conn.session
        assert req.member is not None and session is not None
        pending = (
            not conn.dead
            and gw.connections.get(conn.socket_id) is conn
            and name in session.channels
            and not session.is_subscribed(name)
        )
        if joined.result in (FULL, GONE) or not pending:
            user_id = state.roster.leave(name, conn.socket_id)
            if user_id is not None and joined.result not in (FULL, GONE):
                # gone before it was confirmed: if it was announced nowhere, leave quietly
                self.left(state, name, user_id, quiet=joined.result == ADDED)
            if joined.result == FULL and pending:
                session.subscription_error(
                    name,
                    "LimitReached",
                    f"The presence channel {name} is full ({gw.max_presence_members} members)",
                    4100,
                )
                conn.flush()
            elif joined.result == GONE:
                self._reset()
            return
        channel = gw.channel(state, name)
        channel.add(conn)
        user_id = req.member.user_id
        if joined.result == ADDED:
            frame = encode_member_added(name, user_id, req.member.user_info).encode()
            gw.fanout(channel, frame, exclude=conn)
            self.relay(state.app.id, name, frame, exclude=conn.socket_id)
            hook = {"name": "member_added", "channel": name, "user_id": user_id}
            # channel_occupied (if this made it) first, then member_added
            self.subscribed(state, name, lambda: self._webhook(state, hook))
        else:
            self.subscribed(state, name)
        session.subscription_succeeded(name, joined.members)
        conn.flush()

    def left(self, state: AppState, name: str, user_id: str, quiet: bool = False) -> None:
        """The node's last socket of ``user_id`` left presence channel ``name``."""
        app_id = state.app.id
        self._submit(
            lambda: self.registry.leave(app_id, name, user_id),
            lambda removed: (
                self._member_gone(state, name, user_id) if removed and not quiet else None
            ),
        )

    def _member_gone(self, state: AppState, name: str, user_id: str) -> None:
        frame = encode_member_removed(name, user_id).encode()
        channel = state.channels.get(name)
        if channel is not None:
            self.local.fanout(channel, frame)
        self.relay(state.app.id, name, frame)
        self._webhook(state, {"name": "member_removed", "channel": name, "user_id": user_id})

    def _webhook(self, state: AppState, event: dict[str, Any]) -> None:
        sink = self.local.webhooks
        if sink is not None:
            self._spawn(sink(state.app, [event]))

    # -- relays to the other nodes -------------------------------------------------------------

    def relay(
        self,
        app_id: str,
        channel: str,
        frame: bytes,
        exclude: str | None = None,
        cache: bool = False,
    ) -> None:
        """Send ``frame`` to the subscribers of ``channel`` on the other nodes."""
        if not self.registry.shared:
            return
        op: dict[str, Any] = {"o": "f", "a": app_id, "c": channel, "f": frame.decode()}
        if exclude:
            op["x"] = exclude
        if cache:
            op["k"] = 1
        self._queue_relay(op)

    def _queue_relay(self, op: dict[str, Any]) -> None:
        self._relay.append(op)
        if self._relay_wake is not None:
            self._relay_wake.set()

    async def relayed(self) -> None:
        """Wait until what is queued for the other nodes is on the bus."""
        if not self.registry.shared or not self._relay or not self._tasks:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._relay_waiters.append(waiter)
        await waiter

    async def _run_relay(self) -> None:
        assert self._relay_wake is not None
        while True:
            await self._relay_wake.wait()
            self._relay_wake.clear()
            try:
                await self._flush_relay_now()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster relay publish failed")
                await asyncio.sleep(0.2)
                self._relay_wake.set()

    async def _flush_relay_now(self) -> None:
        while self._relay:
            ops, waiters = self._relay, self._relay_waiters
            self._relay, self._relay_waiters = [], []
            try:
                assert self.bus is not None  # a shared registry always comes with its bus
                await self.bus.publish(BusMessage(BUS_KIND, {"node": self.node_id, "ops": ops}))
            except Exception:
                self._relay = ops + self._relay
                self._relay_waiters = waiters + self._relay_waiters
                raise
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def on_remote(self, payload: dict[str, Any]) -> Awaitable[None] | None:
        """Relayed ops from the bus, via the gateway's hub consumer: another node's fan-out,
        or (from any node, this one too) "a node died: catch up", which the hub awaits in
        line with the other messages, so a catch-up never races a live delivery."""
        mine = payload.get("node") == self.node_id
        catch_up = False
        gw = self.local
        for op in payload.get("ops") or ():
            if op.get("o") == "c":
                catch_up = True
                continue
            if mine:
                continue
            state = gw.apps.get(op.get("a", ""))
            if state is None:
                continue  # no socket of that app here
            if op.get("o") == "f":
                frame = op["f"].encode()
                if op.get("k"):
                    state.cache[op["c"]] = frame
                channel = state.channels.get(op["c"])
                if channel is not None:
                    exclude = gw.connections.get(op["x"]) if op.get("x") else None
                    gw.fanout(channel, frame, exclude)
            elif op.get("o") == "t":
                gw.terminate_user(state, op["u"])
        return self.on_node_lost() if catch_up else None

    # -- the HTTP API ---------------------------------------------------------------------------

    async def trigger(
        self, state: AppState, events: Iterable[TriggerEvent]
    ) -> list[dict[str, dict[str, Any]]]:
        """Trigger on every node; ``info`` (if asked) counts the whole cluster."""
        results = []
        for event in events:
            self.local.trigger(state, event)
            for name in event.channels:
                if self.registry.shared:
                    frame = encode_event(event.name, name, event.data).encode()
                    self.relay(
                        state.app.id, name, frame, event.socket_id, cache=is_cache_channel(name)
                    )
            info = {}
            if event.info:
                for name in event.channels:
                    info[name] = await self.channel_info(state, name, event.info)
            results.append(info)
        await self.relayed()
        return results

    async def terminate(self, state: AppState, user_id: str) -> None:
        self.local.terminate_user(state, user_id)
        if self.registry.shared:
            self._queue_relay({"o": "t", "a": state.app.id, "u": user_id})
            await self.relayed()

    async def channels(self, app_id: str) -> dict[str, int]:
        """Occupied channels of the app in the cluster: name → subscription count."""
        return await self.registry.channels(app_id)

    async def members(self, app_id: str, channel: str) -> dict[str, Any]:
        return await self.registry.members(app_id, channel)

    async def channel_info(
        self, state: AppState, name: str, wanted: Iterable[str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        presence = name.startswith("presence-")
        for attribute in wanted:
            if attribute == "user_count" and presence:
                out["user_count"] = await self.registry.user_count(state.app.id, name)
            elif attribute == "subscription_count" and not presence:
                out["subscription_count"] = await self.registry.subscription_count(
                    state.app.id, name
                )
            elif attribute == "cache" and name in state.cache:
                out.update(self.local.channel_info(state, name, ("cache",)))
        return out

    async def still_true(self, app_id: str, event: dict[str, Any]) -> bool:
        """For a held channel_vacated/member_removed webhook: is it still so in the cluster?
        (A client that reconnects within the hold often lands on another node.)"""
        channel = str(event.get("channel", ""))
        if event.get("name") == "channel_vacated":
            return await self.registry.subscription_count(app_id, channel) == 0
        if event.get("name") == "member_removed":
            return str(event.get("user_id")) not in await self.registry.members(app_id, channel)
        return True

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes with what each reported on its last beat (for the console)."""
        return await self.registry.nodes()

    async def app_connections(self) -> dict[str, dict[str, int]]:
        """Pusher connections per app and live node: app id → node id → count (other nodes
        as of their last beat, this node now)."""
        out: dict[str, dict[str, int]] = {}
        for node in await self.nodes():
            if node.node_id == self.node_id:
                continue
            apps = node.info.get("apps")
            if isinstance(apps, dict):
                for app_id, n in apps.items():
                    if int(n) > 0:
                        out.setdefault(str(app_id), {})[node.node_id] = int(n)
        for app_id, state in list(self.local.apps.items()):
            if state.connections:
                out.setdefault(app_id, {})[self.node_id] = state.connections
        return out

    async def connections(self) -> dict[str, int]:
        """Pusher connections per live node (as of each node's last beat; this node: now)."""
        out = {n.node_id: int(n.info.get("connections", 0)) for n in await self.nodes()}
        out[self.node_id] = len(self.local.connections)
        return out

    # -- liveness ---------------------------------------------------------------------------------

    async def _run_beats(self) -> None:
        # A node reaps others only after beating without a failure for node_timeout: after
        # a Redis outage every node's last beat is old, and the first one back must not
        # declare the others dead before they had a chance to beat again.
        beating_since = time.monotonic()
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                now = time.time()
                if not await self.registry.heartbeat(now, self._info()):
                    self._reset()
                if time.monotonic() - beating_since < self.node_timeout:
                    continue
                reaped = await self.registry.reap(now - self.node_timeout)
                if reaped.nodes:
                    log.warning(
                        "reaped silent node(s) %s: %d departures",
                        ", ".join(reaped.nodes),
                        len(reaped.departures),
                    )
                    await self._departed(reaped.departures)
                    # A node killed between a commit and its bus publish left events no one
                    # was woken for: every node (this one too) catches up from storage.
                    if self.registry.shared:
                        self._queue_relay({"o": "c", "a": ""})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster heartbeat failed")
                beating_since = time.monotonic()

    async def _departed(self, departures: list[Departure]) -> None:
        """A dead node's members and channels, reaped by this node: tell everyone once."""
        for d in departures:
            state = await self.local.app_state_by_id(d.app_id)
            if state is None:
                continue
            if d.user_id is None:
                self._webhook(state, {"name": "channel_vacated", "channel": d.channel})
            else:
                self._member_gone(state, d.channel, d.user_id)

    async def drain(self) -> None:
        """The node is draining: every client reconnects (4200), to another node."""
        self._close_all("Server draining: reconnect")

    def _close_all(self, reason: str) -> None:
        for conn in list(self.local.connections.values()):
            if conn.session is not None:
                conn.session.fail(CloseCode.GENERIC_RECONNECT, reason)
                conn.flush()
            else:
                conn.close(CloseCode.GENERIC_RECONNECT, reason)

    def _reset(self) -> None:
        """This node was declared dead: drop every socket so clients reconnect, register
        again after the queued leaves (which the registry ignores)."""
        if self._resetting:
            return
        self._resetting = True
        log.error("this node was reaped by the cluster; closing its sockets to start afresh")
        self._close_all("Node restarting its state")

        async def again() -> None:
            await self.registry.register(time.time(), self._info())

        def done(_: Any) -> None:
            self._resetting = False

        self._submit(again, done)
