"""Credential comparison: as bytes, in constant time, for any text a client can send.

A client controls every byte of a key, secret, token or signature it presents: non-ASCII
text, and (through JSON ``\\ud800`` escapes) lone surrogates that ``str.encode()`` refuses.
``hmac.compare_digest`` raises ``TypeError`` on two ``str`` with non-ASCII characters, so
every comparison goes through :func:`same_secret`, which never raises.
"""

from __future__ import annotations

import hmac


def as_bytes(value: str | bytes) -> bytes:
    """UTF-8 bytes of ``value``; lone surrogates are kept (``surrogatepass``), never raise."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogatepass")


def same_secret(presented: str | bytes, expected: str | bytes) -> bool:
    """``presented == expected`` compared as bytes in constant time (for equal lengths)."""
    return hmac.compare_digest(as_bytes(presented), as_bytes(expected))
