"""Redis pub/sub bus for many ordercast nodes. Messages are JSON on one channel."""

from __future__ import annotations

import asyncio
import contextlib
import json

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ordercast import metrics
from ordercast.bus.memory import QueueListener
from ordercast.errors import ConfigError
from ordercast.ports import BusMessage

CHANNEL = "ordercast:bus"


class RedisBus:
    """Publishes to Redis; one subscriber connection per process feeds local listeners."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self._redis = aioredis.from_url(url)
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL '{url}': {exc}") from exc
        self._listeners: set[QueueListener] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._pump(), name="redis-bus")
            await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def _pump(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self._ready.set()
                async for raw in pubsub.listen():
                    if raw.get("type") != "message":
                        continue
                    decoded = json.loads(raw["data"])
                    message = BusMessage(decoded["kind"], decoded["payload"])
                    for listener in self._listeners:
                        listener.offer(message)
            except RedisError:
                # Connection lost: listeners may have missed messages; they catch up
                # from storage when they see ``lagged``.
                metrics.BUS_RECONNECTS.inc()
                for listener in self._listeners:
                    listener.lagged = True
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(RedisError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

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
        await self._redis.publish(CHANNEL, body)

    def listen(self, maxsize: int = 10_000) -> QueueListener:
        listener = QueueListener(maxsize, on_close=self._listeners.discard)
        self._listeners.add(listener)
        return listener
