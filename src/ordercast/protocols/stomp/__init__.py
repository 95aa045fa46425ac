"""Pure, sans-I/O STOMP 1.2 (1.0/1.1 compatible) server core: frames, session, fan-out.

Standard library and :mod:`ordercast.errors` only: no sockets, no asyncio, no clock.
"""

from __future__ import annotations

from .frames import (
    CLIENT_COMMANDS,
    SERVER_COMMANDS,
    Frame,
    FrameParser,
    FrameTooLarge,
    MalformedFrame,
    escape_header,
    serialize,
    unescape_header,
)
from .messages import EncodedMessage, encode_message, subscription_prefix
from .session import (
    ACK_MODES,
    HEARTBEAT_EOL,
    SUPPORTED_VERSIONS,
    AckReceived,
    ConnectRequested,
    DisconnectRequested,
    ErrorReason,
    ErrorSent,
    Event,
    NackReceived,
    SessionConfig,
    SessionState,
    StompSession,
    SubscribeRequested,
    Subscription,
    UnsubscribeRequested,
    negotiate_heartbeat,
    negotiate_version,
    select_subprotocol,
)

__all__ = [
    "ACK_MODES",
    "CLIENT_COMMANDS",
    "HEARTBEAT_EOL",
    "SERVER_COMMANDS",
    "SUPPORTED_VERSIONS",
    "AckReceived",
    "ConnectRequested",
    "DisconnectRequested",
    "EncodedMessage",
    "ErrorReason",
    "ErrorSent",
    "Event",
    "Frame",
    "FrameParser",
    "FrameTooLarge",
    "MalformedFrame",
    "NackReceived",
    "SessionConfig",
    "SessionState",
    "StompSession",
    "SubscribeRequested",
    "Subscription",
    "UnsubscribeRequested",
    "encode_message",
    "escape_header",
    "negotiate_heartbeat",
    "negotiate_version",
    "select_subprotocol",
    "serialize",
    "subscription_prefix",
    "unescape_header",
]
