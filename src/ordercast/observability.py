"""Wiring of metrics, logs and the console's live views to a runtime.

``install(runtime)`` (``ordercast run``, the HTTP app and the tests call it on an opened
runtime) registers the runtime as the source of the scrape-time metrics and gives the
hub its write counter. :class:`LocalConnections` is the small query interface the
dashboard's connections page reads: what this process's gateways hold. A cluster-wide
implementation answers the same :class:`ConnectionsSource` protocol.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ordercast import metrics
from ordercast.gateway.pusher.registry import channel_is_presence

if TYPE_CHECKING:
    from ordercast.gateway.cluster import PusherCluster
    from ordercast.ports import Outbox
    from ordercast.runtime import Runtime


class RuntimeMetrics:
    """The runtime's gateways and storage as the metrics' scrape-time sources."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.outbox: Outbox = runtime.store.outbox()  # the queue depth, read at each scrape

    def written(self) -> int:
        rt = self.runtime
        return rt.pusher.out.writes + rt.stomp.delivered + rt.doshii.emitted

    def connection_counts(self) -> Iterable[tuple[str, str, int, int]]:
        for app_id, state in list(self.runtime.pusher.channels.apps.items()):
            subs = sum(len(channel.subs) for channel in state.channels.values())
            if state.connections or subs:
                yield "pusher", app_id, state.connections, subs
        rows: dict[str, list[int]] = {}
        for conn in list(self.runtime.stomp.connections):
            app_id = conn.principal.app_id if conn.principal is not None else "-"
            row = rows.setdefault(app_id, [0, 0])
            row[0] += 1
            row[1] += len(conn.entries)
        for app_id, (conns, subs) in rows.items():
            yield "stomp", app_id, conns, subs
        for app_id, sockets in list(self.runtime.doshii.by_app.items()):
            if sockets:  # each socket follows its app's orders: one subscription
                yield "doshii", app_id, len(sockets), len(sockets)

    def fanout_totals(self) -> Iterable[tuple[str, int]]:
        yield "pusher", self.runtime.pusher.out.writes
        yield "stomp", self.runtime.stomp.delivered
        yield "doshii", self.runtime.doshii.emitted

    async def outbox_depth(self) -> tuple[dict[str, int], float | None]:
        return await self.outbox.depth(time.time())

    async def timers_pending(self) -> int:
        pos = self.runtime.pos
        return await pos.timers.count_pending() if pos is not None else 0


class FanoutTrace:
    """Where each recent order event went on this node: (seq, protocol, channel or
    destination, sockets) per order, for the console's timeline. Bounded: the last
    ``max_orders`` orders, ``max_rows`` rows each."""

    def __init__(self, max_orders: int = 5000, max_rows: int = 500) -> None:
        self.max_orders = max_orders
        self.max_rows = max_rows
        self.orders: OrderedDict[str, list[tuple[int, str, str, int]]] = OrderedDict()

    def __call__(self, order_id: str, seq: int, protocol: str, target: str, sockets: int) -> None:
        rows = self.orders.get(order_id)
        if rows is None:
            rows = self.orders[order_id] = []
            if len(self.orders) > self.max_orders:
                self.orders.popitem(last=False)
        if len(rows) < self.max_rows:
            rows.append((seq, protocol, target, sockets))

    def of(self, order_id: str) -> list[tuple[int, str, str, int]]:
        return list(self.orders.get(order_id, ()))


class Observability(RuntimeMetrics):
    """What ``install`` attaches to a runtime: metric sources and the fan-out trace."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.trace = FanoutTrace()
        cluster = runtime.pusher.cluster
        self.connections: ConnectionsSource
        #: Who recorded the fan-out trace: this node's cluster id with a Redis bus, else "local".
        self.node = "local"
        if cluster.registry.shared:
            self.connections = ClusterConnections(runtime, cluster)
            self.node = cluster.node_id
        else:
            self.connections = LocalConnections(runtime)
        runtime.pusher.orders.trace = self.trace
        runtime.stomp.trace = self.trace


def install(runtime: Runtime) -> Observability:
    """Attach metrics sources and the fan-out trace to ``runtime``; idempotent."""
    existing = getattr(runtime, "_observability", None)
    if isinstance(existing, Observability):
        return existing
    source = Observability(runtime)
    runtime._observability = source  # type: ignore[attr-defined]
    metrics.GATEWAYS.source = weakref.ref(source)
    runtime.hub.written = source.written
    return source


# -- the connections page's query interface -------------------------------------------------


class ConnectionsSource(Protocol):
    """Live connection state for the console, restricted to ``app_ids`` (None: every app).

    Rows: ``{"protocol", "app_id", "node", "connections", "nodes": [{"node", "connections"}],
    "channels": [{"name", "subscribers", "members": [{"user_id", "user_info"}] | None}]}``.
    ``node`` is ``"cluster"`` for a row counted over every node, else the node's id."""

    async def connections(self, app_ids: frozenset[str] | None) -> list[dict[str, Any]]: ...


class LocalConnections:
    """This process's sockets (one node, or STOMP in a cluster: STOMP has no shared state)."""

    def __init__(self, runtime: Runtime, node: str = "local") -> None:
        self.runtime = runtime
        self.node = node

    async def connections(self, app_ids: frozenset[str] | None) -> list[dict[str, Any]]:
        return self.pusher_rows(app_ids) + self.stomp_rows(app_ids) + self.doshii_rows(app_ids)

    def pusher_rows(self, app_ids: frozenset[str] | None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for app_id, state in list(self.runtime.pusher.channels.apps.items()):
            if app_ids is not None and app_id not in app_ids:
                continue
            channels = []
            for name, channel in sorted(state.channels.items()):
                members = None
                if channel_is_presence(name):
                    members = [
                        {"user_id": uid, "user_info": info}
                        for uid, info in state.roster.members(name).items()
                    ]
                channels.append(
                    {"name": name, "subscribers": len(channel.subs), "members": members}
                )
            if state.connections or channels:
                rows.append(
                    {
                        "protocol": "pusher",
                        "app_id": app_id,
                        "node": self.node,
                        "connections": state.connections,
                        "nodes": [{"node": self.node, "connections": state.connections}],
                        "channels": channels,
                    }
                )
        return rows

    def stomp_rows(self, app_ids: frozenset[str] | None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        by_app: dict[str, dict[str, Any]] = {}
        for conn in list(self.runtime.stomp.connections):
            if conn.principal is None:
                continue
            app_id = conn.principal.app_id
            if app_ids is not None and app_id not in app_ids:
                continue
            row = by_app.setdefault(
                app_id,
                {
                    "protocol": "stomp",
                    "app_id": app_id,
                    "node": self.node,
                    "connections": 0,
                    "destinations": {},
                },
            )
            row["connections"] += 1
            for entry in conn.entries.values():
                dest = entry.sub.destination
                row["destinations"][dest] = row["destinations"].get(dest, 0) + 1
        for row in by_app.values():
            dests = row.pop("destinations")
            row["nodes"] = [{"node": self.node, "connections": row["connections"]}]
            row["channels"] = [
                {"name": name, "subscribers": n, "members": None}
                for name, n in sorted(dests.items())
            ]
            rows.append(row)
        return rows

    def doshii_rows(self, app_ids: frozenset[str] | None) -> list[dict[str, Any]]:
        """Doshii partner sockets (/app/socket): each follows its app's orders."""
        rows: list[dict[str, Any]] = []
        for app_id, sockets in sorted(self.runtime.doshii.by_app.items()):
            if not sockets or (app_ids is not None and app_id not in app_ids):
                continue
            rows.append(
                {
                    "protocol": "doshii",
                    "app_id": app_id,
                    "node": self.node,
                    "connections": len(sockets),
                    "nodes": [{"node": self.node, "connections": len(sockets)}],
                    "channels": [
                        {"name": "order updates", "subscribers": len(sockets), "members": None}
                    ],
                }
            )
        return rows


class ClusterConnections:
    """A node of a cluster (Redis bus): Pusher connections per app and node from the nodes'
    beats (other nodes as of their last beat, every ``cluster_heartbeat`` seconds), channels
    with the cluster's subscription counts and presence members from the registry. STOMP
    keeps no shared state, nor do Doshii sockets: their rows are this node's."""

    def __init__(self, runtime: Runtime, cluster: PusherCluster) -> None:
        self.cluster = cluster
        self.local = LocalConnections(runtime, node=cluster.node_id)

    async def connections(self, app_ids: frozenset[str] | None) -> list[dict[str, Any]]:
        per_app = await self.cluster.app_connections()
        wanted = sorted(per_app if app_ids is None else app_ids)
        rows: list[dict[str, Any]] = []
        for app_id in wanted:
            nodes = per_app.get(app_id, {})
            counts = await self.cluster.channels(app_id)
            channels = []
            for name, subscribers in sorted(counts.items()):
                members = None
                if channel_is_presence(name):
                    roster = await self.cluster.members(app_id, name)
                    members = [{"user_id": uid, "user_info": info} for uid, info in roster.items()]
                channels.append({"name": name, "subscribers": subscribers, "members": members})
            if nodes or channels:
                rows.append(
                    {
                        "protocol": "pusher",
                        "app_id": app_id,
                        "node": "cluster",
                        "connections": sum(nodes.values()),
                        "nodes": [{"node": n, "connections": c} for n, c in sorted(nodes.items())],
                        "channels": channels,
                    }
                )
        return rows + self.local.stomp_rows(app_ids) + self.local.doshii_rows(app_ids)
