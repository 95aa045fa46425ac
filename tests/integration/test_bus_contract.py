"""One contract suite for the bus, run on the in-process bus and on Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from ordercast.bus import open_bus
from ordercast.errors import ConfigError
from ordercast.ports import Bus, BusMessage


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    # Its own namespace: other test runs share the Redis server.
    b = open_bus(url, f"ordercast-test:{secrets.token_hex(4)}")
    await b.start()
    try:
        yield b
    finally:
        await b.close()


async def _take(it: AsyncIterator[BusMessage], n: int) -> list[BusMessage]:
    out = []
    async for message in it:
        out.append(message)
        if len(out) == n:
            break
    return out


async def test_every_listener_gets_every_message_in_order(bus: Bus) -> None:
    a, b = bus.listen(), bus.listen()
    await bus.ping()
    for i in range(20):
        await bus.publish(BusMessage("order", {"i": i, "order": {"id": "o"}}))
    got_a = await asyncio.wait_for(_take(a.__aiter__(), 20), 5)
    got_b = await asyncio.wait_for(_take(b.__aiter__(), 20), 5)
    assert [m.payload["i"] for m in got_a] == list(range(20))
    assert [m.payload["i"] for m in got_b] == list(range(20))
    assert got_a[0].kind == "order"
    await a.close()
    await b.close()


async def test_a_full_listener_is_marked_lagged_not_blocking(bus: Bus) -> None:
    slow = bus.listen(maxsize=3)
    fast = bus.listen()
    for i in range(10):
        await bus.publish(BusMessage("order", {"i": i}))
    got = await asyncio.wait_for(_take(fast.__aiter__(), 10), 5)
    assert len(got) == 10
    assert slow.lagged is True
    await slow.close()
    await fast.close()


async def test_closed_listener_stops_iterating(bus: Bus) -> None:
    listener = bus.listen()
    await listener.close()
    assert await asyncio.wait_for(_take(listener.__aiter__(), 1), 2) == []


def test_unknown_bus_url_fails_fast() -> None:
    with pytest.raises(ConfigError, match="memory://"):
        open_bus("kafka://x")
