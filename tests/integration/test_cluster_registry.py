"""One contract suite for the cluster registry (presence and channel occupancy across nodes),
run on the in-process registry (nodes sharing one MemoryCluster) and on Redis (nodes sharing
one prefix, unique per test so concurrent runs never meet)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import pytest

from ordercast.cluster import (
    ADDED,
    FULL,
    GONE,
    OCCUPIED,
    PRESENT,
    STALE,
    VACATED,
    Departure,
    Reaped,
    Registry,
    open_registry,
)
from ordercast.cluster.memory import MemoryCluster, MemoryRegistry
from ordercast.errors import ConfigError

Factory = Callable[[str], Registry]


@pytest.fixture(params=["memory", "redis"])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    made: list[Registry] = []
    if request.param == "memory":
        shared = MemoryCluster()

        def make(node_id: str) -> Registry:
            made.append(MemoryRegistry(shared, node_id))
            return made[-1]
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"octest:{secrets.token_hex(4)}:"

        def make(node_id: str) -> Registry:
            made.append(open_registry(url, prefix, node_id))
            return made[-1]

    yield make
    if made:
        await made[0].reap(float("inf"))  # leave nothing behind in the shared Redis
    for registry in made:
        await registry.close()


async def _two(make: Factory) -> tuple[Registry, Registry]:
    a, b = make("node-a"), make("node-b")
    await a.register(100.0, {"connections": 1})
    await b.register(100.0, {"connections": 2})
    return a, b


async def test_occupied_and_vacated_once_per_cluster_transition(nodes: Factory) -> None:
    a, b = await _two(nodes)
    assert await a.count("app1", "orders", +1) == OCCUPIED
    assert await b.count("app1", "orders", +1) == 0  # already occupied on another node
    assert await a.count("app1", "orders", +1) == 0
    assert await a.subscription_count("app1", "orders") == 3
    assert await b.channels("app1") == {"orders": 3}
    assert await a.count("app1", "orders", -1) == 0
    assert await a.count("app1", "orders", -1) == 0
    assert await b.count("app1", "orders", -1) == VACATED
    assert await a.channels("app1") == {}
    # A leave the node never counted changes nothing (no negative counts).
    assert await b.count("app1", "orders", -1) == 0
    assert await a.count("app1", "orders", +1) == OCCUPIED
    # Apps are separate.
    assert await a.channels("app2") == {}


async def test_presence_roster_is_cluster_wide(nodes: Factory) -> None:
    a, b = await _two(nodes)
    joined = await a.join("app1", "presence-r-1", "alice", {"name": "A"}, True, 10)
    assert (joined.result, joined.members) == (ADDED, {"alice": {"name": "A"}})
    joined = await b.join("app1", "presence-r-1", "bob", {"name": "B"}, True, 10)
    assert joined.result == ADDED
    assert joined.members == {"alice": {"name": "A"}, "bob": {"name": "B"}}
    # alice on a second node: already a member, no member_added.
    joined = await b.join("app1", "presence-r-1", "alice", {"name": "other"}, True, 10)
    assert joined.result == PRESENT and joined.members["alice"] == {"name": "A"}
    # a second socket of bob on the same node (not the first local one): just the roster.
    joined = await b.join("app1", "presence-r-1", "bob", {"name": "B"}, False, 10)
    assert joined.result == PRESENT and set(joined.members) == {"alice", "bob"}
    assert await a.user_count("app1", "presence-r-1") == 2
    # alice leaves node a: still held by node b.
    assert await a.leave("app1", "presence-r-1", "alice") is False
    assert await a.leave("app1", "presence-r-1", "alice") is False  # twice: nothing
    assert await b.leave("app1", "presence-r-1", "alice") is True
    assert await a.members("app1", "presence-r-1") == {"bob": {"name": "B"}}
    assert await b.leave("app1", "presence-r-1", "bob") is True
    assert await a.user_count("app1", "presence-r-1") == 0


async def test_presence_limit_counts_users_of_every_node(nodes: Factory) -> None:
    a, b = await _two(nodes)
    assert (await a.join("app1", "presence-x", "u1", {}, True, 2)).result == ADDED
    assert (await b.join("app1", "presence-x", "u2", {}, True, 2)).result == ADDED
    full = await a.join("app1", "presence-x", "u3", {}, True, 2)
    assert full.result == FULL and full.members == {}
    # A member already in (on another node) may still join: it adds no user.
    assert (await a.join("app1", "presence-x", "u2", {}, True, 2)).result == PRESENT
    assert await b.user_count("app1", "presence-x") == 2


async def test_dead_node_is_reaped_once_with_its_departures(nodes: Factory) -> None:
    a, b = await _two(nodes)
    await a.count("app1", "private-a-only", +1)
    await a.count("app1", "shared", +1)
    await b.count("app1", "shared", +1)
    await a.join("app1", "presence-r-1", "alice", {}, True, 10)
    await a.join("app1", "presence-r-1", "both", {}, True, 10)
    await b.join("app1", "presence-r-1", "both", {}, True, 10)
    await b.join("app1", "presence-r-1", "bob", {}, True, 10)
    # b keeps beating; a stopped at t=100.
    assert await b.heartbeat(130.0, {"connections": 2}) is True
    reaped = await b.reap(cutoff=120.0)
    assert reaped.nodes == ["node-a"]
    assert sorted(reaped.departures, key=str) == sorted(
        [
            Departure("app1", "private-a-only"),
            Departure("app1", "presence-r-1", "alice"),
        ],
        key=str,
    )
    assert await b.reap(cutoff=120.0) == Reaped()  # exactly once, whoever asks
    assert await a.reap(cutoff=120.0) == Reaped()
    assert await b.channels("app1") == {"shared": 1}
    assert set(await b.members("app1", "presence-r-1")) == {"both", "bob"}
    assert [n.node_id for n in await b.nodes()] == ["node-b"]
    assert (await b.nodes())[0].info == {"connections": 2}
    # The reaped node finds out on its next beat or change, and registers afresh.
    assert await a.heartbeat(131.0, {}) is False
    assert await a.count("app1", "shared", +1) == STALE
    assert (await a.join("app1", "presence-r-1", "carol", {}, True, 10)).result == GONE
    assert await a.leave("app1", "presence-r-1", "alice") is False
    await a.register(132.0, {})
    assert await a.count("app1", "shared", +1) == 0
    assert await b.subscription_count("app1", "shared") == 2


async def test_a_node_reaps_itself_on_a_clean_stop(nodes: Factory) -> None:
    a, b = await _two(nodes)
    await a.count("app1", "c1", +1)
    await a.join("app1", "presence-1", "alice", {"x": 1}, True, 10)
    reaped = await a.reap(0.0, node_id="node-a")
    assert reaped.nodes == ["node-a"]
    assert sorted(reaped.departures, key=str) == sorted(
        [Departure("app1", "c1"), Departure("app1", "presence-1", "alice")], key=str
    )
    assert [n.node_id for n in await b.nodes()] == ["node-b"]


def test_unknown_bus_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        open_registry("kafka://x", "p:", "n")
