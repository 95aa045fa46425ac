"""Redis pub/sub bus for many ordercast nodes. Messages are JSON on one channel,
``{prefix}bus`` (the deployment's namespace: see :func:`ordercast.bus.default_prefix`).

The subscriber connection never dies silently: any failure of the pump (connection lost,
Redis restarted, an unexpected reply) is logged, the pump reconnects with backoff, and once
subscribed again every listener is marked lagged so the gateways catch up from storage (the
event log is the truth; the bus is only a wake-up path). :attr:`RedisBus.down_reason` says
why the bus is down meanwhile (``/health`` reports it). A message that is not ours (bad
JSON, another shape) is logged and skipped.

A publish that fails (after redis-py's own retries) loses that wake-up for EVERY node, also
those whose subscription is fine. So the publishing node marks its own listeners lagged and,
as soon as Redis takes a publish again (the next one, or its pump's resubscription), first
publishes a lag notice (kind :data:`~ordercast.ports.LAGGED`, with the time of the first
failure): every node's listeners are marked lagged and catch up from storage.
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
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ordercast import metrics
from ordercast.bus.memory import QueueListener
from ordercast.errors import ConfigError
from ordercast.fastjson import dumps
from ordercast.ports import LAGGED, BusMessage

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
            self._redis = aioredis.from_url(
                url,
                client_name=self.client_name,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
            )
            # The subscriber: no silent retries (a retried read would resubscribe and hide
            # the gap); the pump notices every failure and marks listeners lagged.
            self._sub = aioredis.from_url(
                url, client_name=self.client_name, retry=Retry(ExponentialBackoff(), 0)
            )
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL '{url}': {exc}") from exc
        self._listeners: set[QueueListener] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.down_reason: str | None = "not started"
        self._down_since: float | None = None
        self.reconnects = 0
        self.bad_messages = 0
        #: When a publish first failed and no lag notice went out since (unix seconds).
        self._unpublished_since: float | None = None

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
            pubsub = self._sub.pubsub(ignore_subscribe_messages=True)
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
                if self._unpublished_since is not None:
                    with contextlib.suppress(Exception):
                        await self._notify_lag()
                delay = self.min_backoff
                async for raw in pubsub.listen():
                    if raw.get("type") != "message":
                        continue
                    message = self._decode(raw.get("data"))
                    if message is None:
                        continue
                    if message.kind == LAGGED:  # a node failed to publish: catch up
                        since = message.payload.get("since")
                        for listener in list(self._listeners):
                            listener.mark_lagged(since if isinstance(since, float) else None)
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
        await self._redis.connection_pool.disconnect()
        await self._redis.aclose()
        await self._sub.connection_pool.disconnect()
        await self._sub.aclose()

    async def ping(self) -> None:
        await self._redis.ping()

    async def publish(self, message: BusMessage) -> None:
        body = dumps({"kind": message.kind, "payload": message.payload})
        try:
            if self._unpublished_since is not None:
                await self._notify_lag()
            await self._redis.publish(self.channel, body)
        except Exception:
            now = time.time()
            if self._unpublished_since is None:
                self._unpublished_since = now
            for listener in list(self._listeners):
                listener.mark_lagged(now)
            raise

    async def _notify_lag(self) -> None:
        """Tell every node (this one included) that wake-ups were lost since the first
        failed publish."""
        since = self._unpublished_since
        notice = json.dumps({"kind": LAGGED, "payload": {"since": since}})
        await self._redis.publish(self.channel, notice)
        if self._unpublished_since == since:
            self._unpublished_since = None

    def listen(self, maxsize: int = 10_000) -> QueueListener:
        listener = QueueListener(maxsize, on_close=self._listeners.discard)
        self._listeners.add(listener)
        return listener
