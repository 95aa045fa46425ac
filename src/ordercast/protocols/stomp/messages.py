"""Encode a MESSAGE once per destination, then splice in each subscriber's headers.

A MESSAGE frame differs between subscribers of one destination only by its ``subscription``
header (and ``ack`` for client-ack subscriptions). :func:`encode_message` renders everything
else once; :meth:`EncodedMessage.for_subscription` (or ``prefix + message.tail`` with a
pre-computed :func:`subscription_prefix`) produces bytes identical to ``serialize()`` of the
full frame whose headers are, in order::

    subscription, [ack], destination, message-id, content-type, *extra headers, content-length
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .frames import Frame, escape_header

__all__ = ["EncodedMessage", "encode_message", "subscription_prefix"]

_MESSAGE = b"MESSAGE\nsubscription:"
# Header names already checked (no ``:``, CR, LF or ``\\``): they need no escaping either.
_VALID_NAMES: set[str] = set()


def subscription_prefix(subscription_id: str, *, escape: bool = True) -> bytes:
    """``b"MESSAGE\\nsubscription:<id>\\n"``: the per-subscriber start of a MESSAGE frame.

    ``escape=False`` is for STOMP 1.0 sessions (ids cannot contain CR or LF there).
    """
    if escape:
        return _MESSAGE + escape_header(subscription_id).encode("utf-8") + b"\n"
    if "\n" in subscription_id or "\r" in subscription_id:
        raise ValueError("a subscription id with CR or LF cannot be sent unescaped")
    return _MESSAGE + subscription_id.encode("utf-8") + b"\n"


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """A MESSAGE rendered once for a destination; see the module docstring."""

    destination: str
    message_id: str
    headers: tuple[tuple[str, str], ...]
    """Every header after subscription/ack, in wire order (destination … content-length)."""
    body: bytes
    tail: bytes
    """Headers after the per-subscriber part, blank line, body, NUL (STOMP 1.1/1.2 escaping)."""
    raw_tail: bytes
    """The same without header escaping, for STOMP 1.0 sessions (often ``tail`` itself)."""

    def for_subscription(
        self, subscription_id: str, ack: str | None = None, *, escape: bool = True
    ) -> bytes:
        """The complete MESSAGE frame for one subscriber (``ack`` for client-ack modes)."""
        prefix = subscription_prefix(subscription_id, escape=escape)
        return self.splice(prefix, ack, escape=escape)

    def splice(self, prefix: bytes, ack: str | None = None, *, escape: bool = True) -> bytes:
        """``prefix`` (from :func:`subscription_prefix`) + optional ack header + the tail."""
        tail = self.tail if escape else self.raw_tail
        if ack is None:
            return prefix + tail
        ack_text = escape_header(ack) if escape else ack
        return prefix + b"ack:" + ack_text.encode("utf-8") + b"\n" + tail

    def to_frame(self, subscription_id: str, ack: str | None = None) -> Frame:
        """The equivalent :class:`Frame` (for tests and debugging, not the hot path)."""
        headers = [("subscription", subscription_id)]
        if ack is not None:
            headers.append(("ack", ack))
        headers.extend(self.headers)
        return Frame("MESSAGE", headers, self.body)


def _render(headers: Iterable[tuple[str, str]], body: bytes, *, escape: bool) -> bytes:
    if escape:
        lines = [f"{escape_header(k)}:{escape_header(v)}" for k, v in headers]
    else:
        lines = [f"{k}:{v}" for k, v in headers]
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\x00"


def encode_message(
    destination: str,
    message_id: str,
    body: bytes | str,
    *,
    content_type: str = "application/json",
    headers: Iterable[tuple[str, str]] = (),
) -> EncodedMessage:
    """Render a MESSAGE for ``destination`` once, ready to splice per subscriber.

    ``headers`` are extra headers placed after ``content-type`` (e.g. ``("seq", "42")``).
    ``content-length`` is always added last. Header names and values must not contain CR or
    LF, and names must not contain ``:`` (ValueError): they are ours, not the peer's.
    """
    payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    all_headers: list[tuple[str, str]] = [
        ("destination", destination),
        ("message-id", message_id),
        ("content-type", content_type),
    ]
    all_headers.extend(headers)
    all_headers.append(("content-length", str(len(payload))))
    needs_escape = False
    for key, value in all_headers:
        if key not in _VALID_NAMES:
            if not key or ":" in key or "\r" in key or "\n" in key:
                raise ValueError(f"invalid MESSAGE header name {key!r}")
            if "\\" in key:
                needs_escape = True
            elif len(_VALID_NAMES) < 1024:  # names are ours: a handful
                _VALID_NAMES.add(key)
        if "\r" in value or "\n" in value:
            raise ValueError(f"MESSAGE header {key!r} must not contain CR or LF")
        if ":" in value or "\\" in value:
            needs_escape = True
    # Escaping changes nothing unless a header holds ``\\`` or ``:`` (the usual case: one
    # rendering serves STOMP 1.0 and 1.1/1.2 sessions alike).
    raw_tail = _render(all_headers, payload, escape=False)
    tail = _render(all_headers, payload, escape=True) if needs_escape else raw_tail
    return EncodedMessage(
        destination=destination,
        message_id=message_id,
        headers=tuple(all_headers),
        body=payload,
        tail=tail,
        raw_tail=raw_tail,
    )
