"""In-process bus: every listener gets its own bounded queue."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from ordercast.ports import LAGGED, BusMessage

_CLOSE = BusMessage("__close__", {})
_LAGGED = BusMessage(LAGGED, {})


class QueueListener:
    """A bounded listener; on overflow it drops the message and sets ``lagged``.

    ``lagged_since`` (unix seconds) is when messages may first have been missed."""

    def __init__(self, maxsize: int, on_close: object = None) -> None:
        self.queue: asyncio.Queue[BusMessage] = asyncio.Queue(maxsize=maxsize)
        self.lagged = False
        self.lagged_since: float | None = None
        self._closed = False
        self._on_close = on_close

    def offer(self, message: BusMessage) -> None:
        if self._closed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self._lag(time.time())

    def mark_lagged(self, since: float | None = None) -> None:
        """Messages were missed (since ``since``, unix seconds): set ``lagged`` and wake the
        consumer with a :data:`~ordercast.ports.LAGGED` notice so it catches up now."""
        if self._closed:
            return
        self._lag(since if since is not None else time.time())
        # When full, the consumer sees ``lagged`` at its next message.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_LAGGED)

    def _lag(self, since: float) -> None:
        if not self.lagged or self.lagged_since is None or since < self.lagged_since:
            self.lagged_since = since
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
    down_reason: str | None = None

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
