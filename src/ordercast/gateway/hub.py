"""One bus listener per process, dispatching every :class:`BusMessage` to the gateways.

Each WebSocket gateway (Pusher, STOMP) registers a consumer::

    class MyConsumer:
        def on_message(self, message: BusMessage) -> Awaitable[None] | None: ...
        def on_lagged(self) -> Awaitable[None] | None: ...

    runtime.hub.add_consumer(MyConsumer())

``on_message`` is called for every message in bus order. Keep it cheap: render, encode
once, write to sockets without awaiting. If it returns an awaitable (e.g. it needs to load
a location from storage) the hub awaits it before the next message, so per-order order is
kept. ``on_lagged`` is called when the bounded listener overflowed and dropped messages (or
the Redis connection dropped and came back): the consumer must catch up from storage (the
event log is the truth; the bus is only a wake-up path) for what changed since
:attr:`Hub.lagged_since` (unix seconds). It runs BEFORE the next message is dispatched, so a
catch-up is never overtaken by a newer live message. An exception in a consumer is logged,
never fatal.

**Holes in one order's events.** A node may commit an event and die before publishing it,
and two nodes' messages about one order may cross on the way through Redis. Either way the
next message for that order starts past the seq this hub dispatched last: the hub reads the
missing events from storage (the event log is the truth) and puts them in front of that
message's own, so every consumer sees the order's events with no hole and in order (a
consumer already skips a seq it has sent). The last seq is remembered for the
:data:`GAP_ORDERS` orders heard of most recently; an order forgotten there, or a hole at the
end of a stream, is left to the catch-up after a lagged listener or a lost node.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from ordercast import metrics
from ordercast.errors import OrdercastError
from ordercast.ports import LAGGED, Bus, BusListener, BusMessage, Store

__all__ = ["GAP_ORDERS", "Hub", "HubConsumer"]

#: Orders whose last dispatched seq the hub remembers to find holes (least recently heard of
#: forgotten first: about 100 bytes each).
GAP_ORDERS: Final = 20_000
#: The most missing events read for one hole.
GAP_EVENTS: Final = 1000

log = logging.getLogger("ordercast.gateway.hub")


class HubConsumer(Protocol):
    def on_message(self, message: BusMessage) -> Awaitable[None] | None: ...
    def on_lagged(self) -> Awaitable[None] | None: ...


class Hub:
    """Owns the process's single bus listener for the gateways."""

    def __init__(self, bus: Bus, maxsize: int = 10_000, store: Store | None = None) -> None:
        self.bus = bus
        self.maxsize = maxsize
        #: Where the events of a hole are read (None: holes are not filled).
        self.store = store
        #: Order id -> the highest seq dispatched, for the orders heard of most recently.
        self.last_seq: OrderedDict[str, int] = OrderedDict()
        self.holes_filled = 0
        self.consumers: list[HubConsumer] = []
        self._listener: BusListener | None = None
        self._task: asyncio.Task[None] | None = None
        #: Sockets written so far by the gateways (set by ``observability.install``): the
        #: commit -> socket-write latency is observed for messages that reached a socket.
        self.written: Callable[[], int] | None = None
        #: During ``on_lagged``: unix seconds from when messages may have been missed.
        self.lagged_since: float | None = None
        self.catch_ups = 0

    def add_consumer(self, consumer: HubConsumer) -> None:
        self.consumers.append(consumer)

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        if self._task is not None:
            return
        self._listener = self.bus.listen(self.maxsize)
        self._task = asyncio.create_task(self._pump(self._listener), name="gateway-hub")

    async def stop(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def dispatch(self, message: BusMessage) -> None:
        """Hand one message to every consumer (also used by tests)."""
        if message.kind == "order" and self.store is not None:
            message = await self._fill_hole(message)
        for consumer in self.consumers:
            await _call(consumer.on_message, message)
        if self.written is not None and message.kind == "order":
            metrics.observe_bus_message(message.payload, self.written)

    async def _fill_hole(self, message: BusMessage) -> BusMessage:
        """``message`` with the events of its order that were never dispatched put in front
        of its own (read from storage), when its first event is past the last seq
        dispatched plus one."""
        payload = message.payload
        events: list[dict[str, Any]] = payload.get("events") or []
        order_id = (payload.get("order") or {}).get("id")
        if not events or not isinstance(order_id, str):
            return message
        try:
            first, last = int(events[0]["seq"]), int(events[-1]["seq"])
        except (KeyError, TypeError, ValueError):
            return message
        known = self.last_seq
        before = known.pop(order_id, None)
        known[order_id] = last if before is None else max(before, last)
        while len(known) > GAP_ORDERS:
            known.popitem(last=False)
        if before is None or first <= before + 1:
            return message
        assert self.store is not None
        try:
            records = await self.store.list_events(order_id, before, GAP_EVENTS)
        except OrdercastError:
            log.warning(
                "order %s: events %d-%d missing, storage unavailable",
                order_id,
                before + 1,
                first - 1,
            )
            return message
        missing = [r.to_dict() for r in records if before < r.seq < first]
        if not missing:
            return message
        self.holes_filled += 1
        log.warning(
            "order %s: events %d-%d never reached this node's bus; read from storage",
            order_id,
            before + 1,
            first - 1,
        )
        return BusMessage(message.kind, {**payload, "events": [*missing, *events]})

    async def catch_up(self) -> None:
        """Tell every consumer to catch up from storage, as after a lagged listener (a dead
        node may have committed events whose bus message never went out)."""
        self.lagged_since = None  # since when is unknown: the consumers' default window
        for consumer in self.consumers:
            await _call(consumer.on_lagged)

    async def _pump(self, listener: BusListener) -> None:
        async for message in listener:
            if listener.lagged:
                listener.lagged = False
                metrics.BUS_LAGGED.inc()
                self.lagged_since, listener.lagged_since = listener.lagged_since, None
                self.catch_ups += 1
                for consumer in self.consumers:
                    await _call(consumer.on_lagged)
            if message.kind != LAGGED:
                await self.dispatch(message)


async def _call(fn: object, *args: object) -> None:
    try:
        result = fn(*args)  # type: ignore[operator]
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("gateway consumer failed")
