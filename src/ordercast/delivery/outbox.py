"""The outbox hook: runs inside every order-write transaction and writes one message row
per wire message per matching webhook endpoint.

Rendering happens here, at commit time, through each endpoint's dialect: the body is the
order as it was at that change, encoded once (``fastjson.encode_body``) and stored, so every retry
and replay sends the same bytes under the same ``webhook-id``. Endpoints that are disabled
still get their rows, marked ``skipped``: nothing is dropped silently, and ``replay`` can
send them later.

With ``defer`` (``ORDERCAST_OUTBOX_RENDER=worker``) the transaction keeps one row per
change instead (the order as committed and its events, for a location with endpoints only),
and a delivery worker renders it later through :meth:`OutboxHook.render`, the same code, in
commit order: the same messages, and the rendering's CPU leaves the process that serves the
order writes (docs/benchmarks.md, session 13).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ordercast.dialects import Target, matches, renderer
from ordercast.domain.events import EventRecord
from ordercast.domain.order import Order
from ordercast.fastjson import encode_body
from ordercast.ports import DeferredChanges, Ids, Outbox, OutboxMessage, Tx
from ordercast.services.common import SYSTEM_IDS
from ordercast.services.orders import order_resource

# Bounds the keys of changes whose transaction rolled back after the hook ran (never taken).
_MAX_QUEUED = 10_000


class OutboxHook:
    """``(tx, order, events)`` (``ports.TxHook``): register with ``store.add_tx_hook``."""

    def __init__(
        self,
        outbox: Outbox,
        base_url: str,
        clock: Callable[[], float] = time.time,
        ids: Ids = SYSTEM_IDS,
        changes: DeferredChanges | None = None,
        defer: bool = False,
    ) -> None:
        if defer and changes is None:
            raise ValueError("deferring changes needs where to keep them")
        self.outbox = outbox
        # Where deferred changes are kept (the SQL outbox): this process's delivery worker
        # expands them whether or not this process defers (another node may).
        self.changes = changes
        self.defer = defer
        self.ids = ids
        self.base_url = base_url
        self.clock = clock
        # Changes whose transaction queued something to send, by (order id, last seq), so
        # that the delivery worker is woken after the commit of those changes only (most
        # changes of a location without endpoints queue nothing, and a wake costs a claim
        # query). Added on the store's writer thread, taken on the event loop: set.add and
        # set.discard are atomic under the GIL, and each key is touched once by each side.
        self._queued: set[tuple[str, int]] = set()

    async def __call__(self, tx: Tx, order: Order, events: list[EventRecord]) -> None:
        if not events:
            return
        if not self.defer or self.changes is None:
            queued = await self.render(tx, order, events)
        elif await self.outbox.targets(tx, order.tenant_id, order.location_id):
            await self.changes.defer(tx, order, events, self.clock())
            queued = True  # a worker renders it; wake the one in this process, if any
        else:
            queued = False
        if queued:
            if len(self._queued) >= _MAX_QUEUED:  # keys of transactions that rolled back
                self._queued.clear()
            self._queued.add((order.id, events[-1].seq))

    async def expand(self, limit: int | None = None) -> int:
        """A delivery worker's round: render deferred changes into messages (how many)."""
        if self.changes is None:
            return 0
        if limit is None:
            return await self.changes.expand(self.messages)
        return await self.changes.expand(self.messages, limit)

    async def render(self, tx: Tx, order: Order, events: list[EventRecord]) -> bool:
        """Write the change's messages for every matching endpoint in ``tx``; whether any
        is to be sent (not only ``skipped`` for a disabled endpoint)."""
        messages = await self.messages(tx, order, events)
        if not messages:
            return False
        await self.outbox.add(tx, messages)
        return any(m.status == "pending" for m in messages)

    async def messages(
        self, tx: Tx, order: Order, events: list[EventRecord]
    ) -> list[OutboxMessage]:
        """The change's messages for every matching endpoint (``skipped`` for a disabled
        one), rendered from what ``tx`` reads; nothing is written."""
        endpoints = await self.outbox.targets(tx, order.tenant_id, order.location_id)
        if not endpoints:
            return []
        subscribed: set[str] = set()
        if any(ep.dialect == "doshii" for ep in endpoints):
            subscribed = await self.outbox.subscribers(tx, order.id)
        # The order's own lists and dicts, not a deep copy: the dialects only read it
        # (``Render`` takes a Mapping) and every body is encoded before this returns.
        resource = order_resource(order, self.base_url, copy=False)
        now = self.clock()
        new_id = self.ids.new_id
        # Endpoints in one dialect for the same target (app, kind, subscribed) get the same
        # messages: rendered, and each body encoded, once per change.
        rendered: dict[tuple[str, Target], list[_Wire]] = {}
        messages: list[OutboxMessage] = []
        for ep in endpoints:
            target = Target(ep.app_id, ep.kind, ep.app_id in subscribed)
            wires = rendered.get((ep.dialect, target))
            if wires is None:
                render = renderer(ep.dialect)
                wires = rendered[(ep.dialect, target)] = [
                    _Wire(event, part, wire.type, wire.payload)
                    for event in events
                    for part, wire in enumerate(render(event, resource, target))
                ]
            for w in wires:
                event = w.event
                if not matches(ep.event_types, event.type, w.type):
                    continue
                messages.append(
                    OutboxMessage.new(
                        id=new_id("msg_"),
                        endpoint=ep,
                        body=w.body(),
                        event_type=event.type,
                        wire_type=w.type,
                        event_at=event.recorded_at,
                        now=now,
                        part=w.part,
                        order_id=event.order_id,
                        event_id=event.event_id,
                        seq=event.seq,
                    )
                )
        return messages

    def queued(self, order: Order, records: list[EventRecord]) -> bool:
        """After a commit: did that change queue messages to send? (True once per change.)"""
        if not records:
            return False
        key = (order.id, records[-1].seq)
        if key not in self._queued:
            return False
        self._queued.discard(key)
        return True


class _Wire:
    """One rendered wire message of a change, its body encoded on first use (only a
    message some endpoint's filter lets through is encoded, as before)."""

    __slots__ = ("_body", "event", "part", "payload", "type")

    def __init__(self, event: EventRecord, part: int, type: str, payload: dict[str, Any]) -> None:
        self.event = event
        self.part = part
        self.type = type
        self.payload = payload
        self._body: bytes | None = None

    def body(self) -> bytes:
        if self._body is None:
            self._body = encode_body(self.payload)
        return self._body
