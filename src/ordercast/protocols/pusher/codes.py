"""Pusher protocol 7 error / close codes (4000-4399) and what clients do with each range.

* 4000-4099: the client must not reconnect unchanged (pusher-js gives up; 4000 retries on TLS).
* 4100-4199: reconnect after backing off (pusher-js: a fixed 1 s).
* 4200-4299: reconnect immediately.
* 4300-4399: other errors (pusher-js gives up if it is a close code).
"""

from __future__ import annotations

import enum

__all__ = ["CloseCode", "Reconnect", "reconnect_policy"]


class CloseCode(enum.IntEnum):
    """Codes used in ``pusher:error`` and as WebSocket close codes."""

    SSL_ONLY = 4000
    APP_NOT_FOUND = 4001
    APP_DISABLED = 4003
    OVER_CONNECTION_QUOTA = 4004
    PATH_NOT_FOUND = 4005
    INVALID_VERSION_FORMAT = 4006
    UNSUPPORTED_PROTOCOL_VERSION = 4007
    NO_PROTOCOL_VERSION = 4008
    UNAUTHORIZED = 4009
    OVER_CAPACITY = 4100
    GENERIC_RECONNECT = 4200
    PONG_NOT_RECEIVED = 4201
    CLOSED_AFTER_INACTIVITY = 4202
    CLIENT_EVENT_RATE_LIMIT = 4301


class Reconnect(enum.Enum):
    """The client behaviour a close code asks for."""

    NEVER = "never"
    WITH_BACKOFF = "with_backoff"
    IMMEDIATELY = "immediately"
    OTHER = "other"


def reconnect_policy(code: int) -> Reconnect:
    """Map a 4000-4399 code to its range's meaning (``OTHER`` outside 4000-4299)."""
    if 4000 <= code <= 4099:
        return Reconnect.NEVER
    if 4100 <= code <= 4199:
        return Reconnect.WITH_BACKOFF
    if 4200 <= code <= 4299:
        return Reconnect.IMMEDIATELY
    return Reconnect.OTHER
