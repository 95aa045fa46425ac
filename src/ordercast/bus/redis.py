"""Redis pub/sub bus for many ordercast nodes. Messages are JSON on one channel,
``{prefix}bus`` (the deployment's namespace: see :func:`ordercast.bus.default_prefix`).

The subscriber connection never dies silently: any failure of the pump (connection lost,
Redis restarted, an unexpected reply) is logged, the pump reconnects with backoff, and once
subscribed again every listener is marked lagged so the gateways catch up from storage (the
event log is the truth; the bus is only a wake-up path). :attr:`RedisBus.down_reason` says
why the bus is down meanwhile (``/health`` reports it). A message that is not ours (bad
JSON, another shape) is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time

import redis.asyncio as aioredis

from ordercast import metrics
from ordercast.bus.memory import QueueListener
from ordercast.errors import ConfigError
from ordercast.ports import BusMessage

__all__ = ["RedisBus"]

log = logging.getLogger("ordercast.bus.redis")

#: Reconnect delays: first retry after MIN_BACKOFF seconds, doubling up to MAX_BACKOFF.
MIN_BACKOFF = 0.1
MAX_BACKOFF = 5.0


class RedisBus:
    """Publishes to Redis; one subscriber connection per process feeds local listeners."""

    def __init__(self, url: str, prefix: str = "ordercast:") -> None:
        self.url = url
        self.prefix = prefix
        self.channel = f"{prefix}bus"
        #: This process's connections as ``CLIENT LIST`` names them.
        self.client_name = f"ordercast-{os.getpid()}-{secrets.token_hex(3)}"
        self.min_backoff = MIN_BACKOFF
        self.max_backoff = MAX_BACKOFF
        try:
            self._redis = aioredis.from_url(url, client_name=self.client_name)
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL '{url}': {exc}") from exc
        self._listeners: set[QueueListener] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.down_reason: str | None = "not started"
        self._down_since: float | None = None
        self.reconnects = 0
        self.bad_messages = 0

    def key(self, name: str) -> str:
        """A Redis key in this deployment's namespace."""
        return f"{self.prefix}{name}"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._pump(), name="redis-bus")
            await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def _pump(self) -> None:
        delay = self.min_backoff
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if self._ready.is_set():
                    # Back after a failure: what was published meanwhile is lost to us.
                    self.reconnects += 1
                    log.warning("Redis bus reconnected; listeners catch up from storage")
                    for listener in list(self._listeners):
                        listener.mark_lagged(self._down_since)
                self.down_reason = None
                self._down_since = None
                self._ready.set()
                delay = self.min_backoff
                async for raw in pubsub.listen():
                    if raw.get("type") != "message":
                        continue
                    message = self._decode(raw.get("data"))
                    if message is None:
                        continue
                    for listener in list(self._listeners):
                        listener.offer(message)
                raise ConnectionError("the subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.BUS_RECONNECTS.inc()
                if self.down_reason is None:
                    self._down_since = time.time()
                delay = max(delay, self.min_backoff)
                self.down_reason = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("Redis bus down (%s); reconnecting in %.1f s", self.down_reason, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _decode(self, data: object) -> BusMessage | None:
        try:
            decoded = json.loads(data)  # type: ignore[arg-type]
            kind, payload = decoded["kind"], decoded["payload"]
            if not isinstance(kind, str) or not isinstance(payload, dict):
                raise TypeError("kind must be a string and payload an object")
        except (ValueError, TypeError, KeyError) as exc:
            self.bad_messages += 1
            log.error("dropped a message on %s that is not ordercast's: %r", self.channel, exc)
            return None
        return BusMessage(kind, payload)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for listener in list(self._listeners):
            await listener.close()
        await self._redis.aclose()

    async def ping(self) -> None:
        await self._redis.ping()

    async def publish(self, message: BusMessage) -> None:
        body = json.dumps({"kind": message.kind, "payload": message.payload}, separators=(",", ":"))
        await self._redis.publish(self.channel, body)

    def listen(self, maxsize: int = 10_000) -> QueueListener:
        listener = QueueListener(maxsize, on_close=self._listeners.discard)
        self._listeners.add(listener)
        return listener
