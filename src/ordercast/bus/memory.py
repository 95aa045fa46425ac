"""In-process bus: every listener gets its own bounded queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ordercast.ports import BusMessage

_CLOSE = BusMessage("__close__", {})


class QueueListener:
    """A bounded listener; on overflow it drops the message and sets ``lagged``."""

    def __init__(self, maxsize: int, on_close: object = None) -> None:
        self.queue: asyncio.Queue[BusMessage] = asyncio.Queue(maxsize=maxsize)
        self.lagged = False
        self._closed = False
        self._on_close = on_close

    def offer(self, message: BusMessage) -> None:
        if self._closed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.lagged = True

    async def __aiter__(self) -> AsyncIterator[BusMessage]:
        while True:
            message = await self.queue.get()
            if message is _CLOSE:
                return
            yield message

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if callable(self._on_close):
            self._on_close(self)
        while True:
            try:
                self.queue.put_nowait(_CLOSE)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


class MemoryBus:
    def __init__(self) -> None:
        self._listeners: set[QueueListener] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for listener in list(self._listeners):
            await listener.close()

    async def ping(self) -> None:
        return None

    async def publish(self, message: BusMessage) -> None:
        for listener in self._listeners:
            listener.offer(message)

    def listen(self, maxsize: int = 10_000) -> QueueListener:
        listener = QueueListener(maxsize, on_close=self._listeners.discard)
        self._listeners.add(listener)
        return listener
