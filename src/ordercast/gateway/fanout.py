"""The fan-out engine of both WebSocket gateways (Pusher and STOMP): one message to many
sockets, never an await per socket.

A gateway encodes each outgoing message once and :meth:`Fanout.put` s it with a snapshot of
its subscribers (the *targets*: a tuple or plan object the gateway rebuilds only when its
subscribers change, so consecutive messages to the same subscribers carry the same object).
The first message queued in an event-loop iteration schedules :meth:`Fanout.flush` at the end
of that iteration (:func:`flush_soon`), so everything produced meanwhile goes out together:

* a message alone goes to the gateway's ``one(targets, payload, extra)`` writer: per socket,
  its bookkeeping checks and one ``transport.send`` (picows frames it and tries the socket
  directly);
* a *run* of messages queued back to back for the same targets goes to the gateway's
  ``run(targets, items)`` writer: the messages framed once as consecutive WebSocket frames
  (:func:`frame_blob`) and written with ONE ``write`` per socket — one syscall instead of
  one per message. A message put with ``alone=True`` never joins a run.

The per-socket loops stay in the gateways (their subscribers and per-order bookkeeping
differ); the engine adds one call per message or run, none per socket. A gateway that writes
to a socket outside the fan-out (a protocol reply, a replay) flushes the queue first
(``if fanout.pending: fanout.flush()``), so every socket sees messages in the order they
were produced.

Slow consumers (:class:`SlowConsumers`): a socket whose kernel + asyncio write buffer holds
more than ``max_buffer`` bytes is dropped — each protocol its own way (Pusher: close 4100;
STOMP: an ERROR frame, then close) — instead of buffering without bound. The hot loops look
at the buffer only once the transport has paused writing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from picows import WSTransport

__all__ = ["Fanout", "SlowConsumers", "flush_soon", "frame_blob", "ws_text_frame"]

T = TypeVar("T")  # the targets: one snapshot of a channel's / destination's subscribers
P = TypeVar("P")  # the payload: the encoded message
X = TypeVar("X")  # the gateway's extra per message (Pusher: a socket to skip; STOMP: a seq)

#: One queued message: (targets, payload, extra, alone).
Item = tuple[T, P, X, bool]


def flush_soon(flush: Callable[[], None]) -> None:
    """Run a gateway's fan-out ``flush`` at the end of this loop iteration, so that what is
    queued meanwhile goes out with it; at once when no loop runs (synchronous callers)."""
    try:
        asyncio.get_running_loop().call_soon(flush)
    except RuntimeError:
        flush()


def close_transport(transport: WSTransport, code: int, reason: str) -> None:
    """A close frame (its reason cut to the 123 bytes a close frame holds), then disconnect;
    a transport already gone is fine. (picows types the code as ``WSCloseCode``; every code
    in 1000-4999 is valid on the wire.)"""
    with contextlib.suppress(Exception):
        transport.send_close(code, reason.encode()[:123])  # type: ignore[arg-type]
    transport.disconnect()


def ws_text_frame(payload: bytes) -> bytes:
    """One unmasked, final server-to-client TEXT frame (RFC 6455 5.2) around ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


def frame_blob(payloads: Iterable[bytes]) -> bytes:
    """``payloads`` as consecutive WebSocket TEXT frames: one buffer for one raw write."""
    return b"".join([ws_text_frame(payload) for payload in payloads])


class Fanout(Generic[T, P, X]):
    """The queue of one gateway's outgoing messages and its end-of-iteration flush."""

    __slots__ = ("_one", "_run", "pending")

    def __init__(
        self,
        one: Callable[[T, P, X], None],
        run: Callable[[T, list[Item[T, P, X]]], None],
    ) -> None:
        self._one = one
        self._run = run
        #: Queued for the end of this loop iteration, in the order produced.
        self.pending: list[Item[T, P, X]] = []

    def put(self, targets: T, payload: P, extra: X, alone: bool = False) -> None:
        """Queue ``payload`` for ``targets``; written at the end of this loop iteration."""
        pending = self.pending
        pending.append((targets, payload, extra, alone))
        if len(pending) == 1:
            flush_soon(self.flush)

    def flush(self) -> None:
        """Write the queue: each run of messages for the same targets through ``run``, each
        other message through ``one``."""
        pending = self.pending
        if not pending:
            return
        self.pending = []
        count = len(pending)
        i = 0
        while i < count:
            targets, payload, extra, alone = pending[i]
            j = i + 1
            if not alone:
                while j < count and pending[j][0] is targets and not pending[j][3]:
                    j += 1
            if j == i + 1:
                self._one(targets, payload, extra)
            else:
                self._run(targets, pending[i:j])
            i = j


class SlowConsumers:
    """The slow-consumer rule: past ``max_buffer`` bytes waiting in a socket's write buffer,
    the gateway drops the socket (``dropped`` counts them)."""

    __slots__ = ("dropped", "max_buffer")

    def __init__(self, max_buffer: int) -> None:
        self.max_buffer = max_buffer
        self.dropped = 0

    def too_slow(self, raw: Any) -> bool:
        """Whether the socket behind ``raw`` (an asyncio write transport, or None when it
        is gone) is past the bound; if so it is counted as dropped (the caller drops it)."""
        if raw is not None and raw.get_write_buffer_size() > self.max_buffer:
            self.dropped += 1
            return True
        return False
