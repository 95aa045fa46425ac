"""Credentials on the wire: the ``Authorization`` header parsed in one place, and
comparison as bytes, in constant time, for any text a client can send.

A client controls every byte of a key, secret, token or signature it presents: non-ASCII
text, and (through JSON ``\\ud800`` escapes) lone surrogates that ``str.encode()`` refuses.
``hmac.compare_digest`` raises ``TypeError`` on two ``str`` with non-ASCII characters, so
every comparison goes through :func:`same_secret`, which never raises.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

from ordercast.errors import Unauthorized


def as_bytes(value: str | bytes) -> bytes:
    """UTF-8 bytes of ``value``; lone surrogates are kept (``surrogatepass``), never raise."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogatepass")


def same_secret(presented: str | bytes, expected: str | bytes) -> bool:
    """``presented == expected`` compared as bytes in constant time (for equal lengths)."""
    return hmac.compare_digest(as_bytes(presented), as_bytes(expected))


@dataclass(frozen=True, slots=True)
class Basic:
    """``Authorization: Basic base64(key:secret)``; ``has_secret`` is False when the decoded
    value holds no ``:`` at all (a key alone)."""

    key: str
    secret: str
    has_secret: bool


@dataclass(frozen=True, slots=True)
class Bearer:
    token: str


def parse_authorization(header: str | None) -> Basic | Bearer | None:
    """The credentials of an ``Authorization`` header (RFC 7617 Basic, RFC 6750 Bearer; the
    scheme is case-insensitive). ``None`` when there is no header, another scheme, or an empty
    bearer token: each caller says what it accepts. A Basic value that is not base64 of UTF-8 raises
    :class:`Unauthorized` ("malformed Basic credentials")."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return Bearer(value) if value else None
    if scheme != "basic":
        return None
    try:  # ValueError: binascii.Error, non-ASCII text, and UnicodeDecodeError alike
        decoded = base64.b64decode(value, validate=True).decode()
    except ValueError as exc:
        raise Unauthorized("malformed Basic credentials") from exc
    key, sep, secret = decoded.partition(":")
    return Basic(key, secret, bool(sep))
