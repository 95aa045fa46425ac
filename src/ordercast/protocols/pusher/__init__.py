"""Pusher Channels protocol 7, sans I/O: wire messages, signatures, sessions, HTTP API checks.

Pure: standard library and :mod:`ordercast.errors` only; no sockets, no clock (``now`` is
passed in), no randomness (socket ids are passed in).

Modules: :mod:`.messages` (parse client frames, encode server frames, channel names),
:mod:`.auth` (signatures, socket ids, presence/user data), :mod:`.session` (one connection),
:mod:`.presence` (members across connections), :mod:`.handshake` (upgrade URL),
:mod:`.httpapi` (REST signature and bodies), :mod:`.codes` (close codes).
"""

from ordercast.protocols.pusher.auth import (
    PresenceMember,
    SignedInUser,
    sign_channel,
    sign_user,
    validate_socket_id,
    verify_channel_auth,
    verify_user_auth,
    webhook_signature,
)
from ordercast.protocols.pusher.codes import CloseCode, Reconnect, reconnect_policy
from ordercast.protocols.pusher.handshake import ConnectionRequest, parse_connection_request
from ordercast.protocols.pusher.messages import (
    ChannelKind,
    channel_kind,
    encode_event,
    encode_member_added,
    encode_member_removed,
    is_cache_channel,
    validate_channel_name,
)
from ordercast.protocols.pusher.presence import JoinResult, PresenceRoster
from ordercast.protocols.pusher.session import (
    ClientEventReceived,
    CloseRequest,
    PusherSession,
    SessionConfig,
    SessionEvent,
    SignedIn,
    SubscribeRequested,
    UnsubscribeRequested,
)

__all__ = [
    "ChannelKind",
    "ClientEventReceived",
    "CloseCode",
    "CloseRequest",
    "ConnectionRequest",
    "JoinResult",
    "PresenceMember",
    "PresenceRoster",
    "PusherSession",
    "Reconnect",
    "SessionConfig",
    "SessionEvent",
    "SignedIn",
    "SignedInUser",
    "SubscribeRequested",
    "UnsubscribeRequested",
    "channel_kind",
    "encode_event",
    "encode_member_added",
    "encode_member_removed",
    "is_cache_channel",
    "parse_connection_request",
    "reconnect_policy",
    "sign_channel",
    "sign_user",
    "validate_channel_name",
    "validate_socket_id",
    "verify_channel_auth",
    "verify_user_auth",
    "webhook_signature",
]
