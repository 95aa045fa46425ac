"""Pusher server webhooks: the gateway's channel events into the webhook outbox.

:class:`PusherWebhooks` is the gateway's ``WebhookSink`` (``async (app, events)``). It
never does I/O on the gateway's path: events go into a per-app buffer, and a background
write puts them in the outbox (``webhook_messages``), one row per ``pusher`` endpoint of
the app and per body of at most 20 events. From there the delivery worker sends them like
every other webhook: retries on the same schedule, the attempts log, the dead letter and
replay, and a crash of the process loses nothing that was written.

Timing, as hosted Pusher does it (with smaller windows):

* Batching: events that arrive within ``window`` seconds (default 50 ms) of the first
  buffered one go in the same body, at most ``MAX_BATCH`` (20) events per body.
* ``channel_vacated`` and ``member_removed`` are held for ``vacate_delay`` seconds (default
  1 s; Pusher uses up to 3 s). If the channel is occupied again, or the same user joins again
  (a page reload, a quick reconnect), within that time, neither event is sent.
* ``time_ms`` is when the body was made (after the batch window), and stays the same on
  retries and replays, as Pusher's docs define it; note that the Python SDK's
  ``validate_webhook`` refuses bodies more than 5 minutes old.

What is held in memory (at most ``window`` plus ``vacate_delay`` seconds) is lost if the
process dies before it is written; its sockets, and so its channels, die with it. On a clean
stop, :meth:`close` writes everything held at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ordercast.dialects import matches
from ordercast.dialects import pusher as dialect
from ordercast.domain.isotime import iso_from_unix
from ordercast.ports import App, Ids, Outbox, OutboxMessage
from ordercast.protocols.webhooks import encode_body
from ordercast.services.common import SYSTEM_IDS

log = logging.getLogger("ordercast.delivery.pusher")

MAX_BUFFERED: Final = 10_000  # events held while the database is unreachable, per process
RETRY_SECONDS: Final = 1.0


class PusherWebhooks:
    """The gateway's webhook sink; one per process (see ``Runtime._open_webhooks``)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        window: float = 0.05,
        vacate_delay: float = 1.0,
        max_batch: int = dialect.MAX_BATCH,
        clock: Callable[[], float] = time.time,
        ids: Ids = SYSTEM_IDS,
    ) -> None:
        self.outbox = outbox
        self.ids = ids
        self.window = window
        self.vacate_delay = vacate_delay
        self.max_batch = max_batch
        self.clock = clock
        # Called with the number of rows written, after they committed (wakes the worker).
        self.on_enqueue: list[Callable[[int], None]] = []
        # Cluster mode: asked, when a held channel_vacated/member_removed is due, whether it
        # is still true for the whole cluster (the user may have come back on another node
        # within the delay); False drops it. Set by the runtime (gateway/cluster.py).
        self.recheck: Callable[[str, dict[str, Any]], Awaitable[bool]] | None = None
        self._ready: dict[str, list[dict[str, Any]]] = {}  # app id -> events, in order
        self._held: dict[tuple[str, ...], tuple[str, dict[str, Any], asyncio.TimerHandle]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[int]] = set()
        self._checks: set[asyncio.Task[None]] = set()
        self._last_check: asyncio.Task[None] | None = None
        self.dropped = 0

    # -- the sink -------------------------------------------------------------------------

    async def __call__(self, app: App, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.add(app.id, event)

    def add(self, app_id: str, event: dict[str, Any]) -> None:
        name = event.get("name")
        key = dialect.debounce_key(event)
        if key is not None and self.vacate_delay > 0:
            full = (app_id, *key)
            if name in dialect.DEBOUNCED:
                previous = self._held.pop(full, None)
                if previous is not None:  # cannot happen with a consistent gateway
                    previous[2].cancel()
                    self._push(previous[0], previous[1])
                handle = asyncio.get_running_loop().call_later(
                    self.vacate_delay, self._release, full
                )
                self._held[full] = (app_id, event, handle)
                return
            held = self._held.pop(full, None)
            if held is not None:  # undone within the delay: neither is sent
                held[2].cancel()
                return
        self._push(app_id, event)

    def _release(self, key: tuple[str, ...]) -> None:
        held = self._held.pop(key, None)
        if held is None:
            return
        if self.recheck is None:
            self._push(held[0], held[1])
            return
        # Checks run concurrently, but push in the order the events were released.
        before = self._last_check
        task = asyncio.ensure_future(self._recheck_then_push(held[0], held[1], before))
        self._last_check = task
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _recheck_then_push(
        self, app_id: str, event: dict[str, Any], before: asyncio.Task[None] | None
    ) -> None:
        assert self.recheck is not None
        try:
            still = await self.recheck(app_id, event)
        except Exception:
            log.exception("pusher webhooks: cluster re-check failed; sending the event")
            still = True
        if before is not None and not before.done():
            await asyncio.wait([before])
        if still:
            self._push(app_id, event)

    def _push(self, app_id: str, event: dict[str, Any]) -> None:
        if self._count() >= MAX_BUFFERED:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("pusher webhooks: buffer full, %d events dropped", self.dropped)
            return
        buffered = self._ready.setdefault(app_id, [])
        buffered.append(event)
        if len(buffered) >= self.max_batch:
            self._schedule(0.0)
        else:
            self._schedule(self.window)

    def _count(self) -> int:
        return sum(len(v) for v in self._ready.values())

    def _schedule(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            if delay > 0:
                return  # a flush is already due within the window
            self._timer.cancel()
        self._timer = loop.call_later(delay, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- writing ----------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write everything buffered (not what is still held back) to the outbox."""
        async with self._lock:
            ready, self._ready = self._ready, {}
            if not ready:
                return 0
            try:
                written = await self._write(ready)
            except Exception:
                log.exception("pusher webhooks: writing to the outbox failed; retrying")
                for app_id, events in ready.items():  # keep the order: old ones first
                    self._ready[app_id] = events + self._ready.get(app_id, [])
                with contextlib.suppress(RuntimeError):
                    self._schedule(RETRY_SECONDS)
                return 0
        if written:
            for callback in self.on_enqueue:
                callback(written)
        return written

    async def _write(self, ready: dict[str, list[dict[str, Any]]]) -> int:
        endpoints = await self.outbox.app_targets(list(ready), dialect.NAME)
        if not endpoints:
            return 0
        now = self.clock()
        time_ms = int(now * 1000)
        event_at = iso_from_unix(now)
        messages: list[OutboxMessage] = []
        for ep in endpoints:
            chosen = [
                e for e in ready.get(ep.app_id, ()) if matches(ep.event_types, e["name"], e["name"])
            ]
            for part, events in enumerate(dialect.batches(chosen, self.max_batch)):
                messages.append(
                    OutboxMessage.new(
                        id=self.ids.new_id("msg_"),
                        endpoint=ep,
                        body=encode_body(dialect.body(time_ms, events)),
                        event_type=dialect.NAME,
                        wire_type=dialect.wire_type(events),
                        event_at=event_at,
                        now=now,
                        part=part,
                    )
                )
        await self.outbox.enqueue(messages)
        return len(messages)

    async def close(self) -> None:
        """Release everything held back and write it (a clean stop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for key in list(self._held):
            held = self._held.pop(key)
            held[2].cancel()
            self._ready.setdefault(held[0], []).append(held[1])
        if self._checks:
            await asyncio.gather(*self._checks, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flush()
        if self._timer is not None:  # the write failed and scheduled a retry: give up
            self._timer.cancel()
            self._timer = None
