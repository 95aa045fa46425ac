"""Pusher protocol 7 wire messages: channel names, parsing client frames, encoding server frames.

Two encoding rules hold everywhere in this module:

* Server → client ``data`` is **always** a JSON-encoded *string* (pysher ``json.loads`` it;
  pusher-js accepts either). Encoders take Python values and do the double encoding.
* Client → server ``data`` arrives as an object (pusher-js, pysher) or as a JSON string (the
  old protocol document); :func:`parse_client_message` accepts both.

Nothing here does I/O. Every encoder returns the complete text frame as ``str``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ordercast.errors import ProtocolError, ValidationError

__all__ = [
    "CACHE_PREFIXES",
    "MAX_CHANNEL_NAME_LENGTH",
    "MAX_DATA_BYTES",
    "MAX_EVENT_NAME_LENGTH",
    "SERVER_TO_USER_PREFIX",
    "ChannelKind",
    "ClientEvent",
    "ClientMessage",
    "Ping",
    "Pong",
    "Signin",
    "Subscribe",
    "UnknownEvent",
    "Unsubscribe",
    "channel_kind",
    "encode_cache_miss",
    "encode_connection_established",
    "encode_error",
    "encode_event",
    "encode_member_added",
    "encode_member_removed",
    "encode_ping",
    "encode_pong",
    "encode_signin_success",
    "encode_subscription_count",
    "encode_subscription_error",
    "encode_subscription_succeeded",
    "is_cache_channel",
    "json_compact",
    "parse_client_message",
    "validate_channel_name",
    "validate_event_name",
]

MAX_CHANNEL_NAME_LENGTH: Final = 200
MAX_EVENT_NAME_LENGTH: Final = 200
MAX_DATA_BYTES: Final = 10 * 1024
SERVER_TO_USER_PREFIX: Final = "#server-to-user-"
CACHE_PREFIXES: Final = (
    "cache-",
    "private-cache-",
    "private-encrypted-cache-",
    "presence-cache-",
)

_CHANNEL_CHARS = re.compile(r"[A-Za-z0-9_\-=@,.;]+")

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def json_compact(value: Any) -> str:
    """Serialise ``value`` as compact JSON (no spaces, UTF-8 kept as is)."""
    return _encoder.encode(value)


# --------------------------------------------------------------------------------------------
# Channel names


class ChannelKind(enum.Enum):
    """What a channel name's prefix makes it. ``cache-`` variants map to their base kind."""

    PUBLIC = "public"
    PRIVATE = "private"
    PRIVATE_ENCRYPTED = "private_encrypted"
    PRESENCE = "presence"
    SERVER_TO_USER = "server_to_user"

    @property
    def needs_auth(self) -> bool:
        """Whether subscribing needs a channel authorization signature."""
        return self in (ChannelKind.PRIVATE, ChannelKind.PRIVATE_ENCRYPTED, ChannelKind.PRESENCE)

    @property
    def allows_client_events(self) -> bool:
        """Client events are allowed on private and presence channels only (not encrypted)."""
        return self in (ChannelKind.PRIVATE, ChannelKind.PRESENCE)


def channel_kind(channel: str) -> ChannelKind:
    """Classify a (valid) channel name by its prefix."""
    if channel.startswith(SERVER_TO_USER_PREFIX):
        return ChannelKind.SERVER_TO_USER
    if channel.startswith("private-encrypted-"):
        return ChannelKind.PRIVATE_ENCRYPTED
    if channel.startswith("private-"):
        return ChannelKind.PRIVATE
    if channel.startswith("presence-"):
        return ChannelKind.PRESENCE
    return ChannelKind.PUBLIC


def is_cache_channel(channel: str) -> bool:
    """True for ``cache-``, ``private-cache-``, ``private-encrypted-cache-`` and ``presence-cache-``
    channels."""
    return channel.startswith(CACHE_PREFIXES)


def validate_channel_name(channel: object) -> str:
    """Return ``channel`` if it is a valid Pusher channel name, else raise ValidationError.

    Valid: 1-200 characters from ``A-Z a-z 0-9 _ - = @ , . ;``; the only other form is
    ``#server-to-user-{user_id}`` where ``user_id`` uses the same characters.
    """
    if not isinstance(channel, str) or not channel:
        raise ValidationError("channel name must be a non-empty string")
    if len(channel) > MAX_CHANNEL_NAME_LENGTH:
        raise ValidationError(
            f"channel name is {len(channel)} characters long; the limit is "
            f"{MAX_CHANNEL_NAME_LENGTH}"
        )
    rest = channel
    if channel.startswith("#"):
        if not channel.startswith(SERVER_TO_USER_PREFIX) or channel == SERVER_TO_USER_PREFIX:
            raise ValidationError(
                f"invalid channel name {channel!r}: '#' is only allowed in "
                f"'{SERVER_TO_USER_PREFIX}{{user_id}}'"
            )
        rest = channel[len(SERVER_TO_USER_PREFIX) :]
    if _CHANNEL_CHARS.fullmatch(rest) is None:
        raise ValidationError(
            f"invalid channel name {channel!r}: allowed characters are A-Z a-z 0-9 _ - = @ , . ;"
        )
    return channel


def validate_event_name(event: object) -> str:
    """Return ``event`` if it is a non-empty string of at most 200 characters."""
    if not isinstance(event, str) or not event:
        raise ValidationError("event name must be a non-empty string")
    if len(event) > MAX_EVENT_NAME_LENGTH:
        raise ValidationError(
            f"event name is {len(event)} characters long; the limit is {MAX_EVENT_NAME_LENGTH}"
        )
    return event


# --------------------------------------------------------------------------------------------
# Client → server messages


@dataclass(frozen=True, slots=True)
class Ping:
    """``pusher:ping``: answer with ``pusher:pong``."""


@dataclass(frozen=True, slots=True)
class Pong:
    """``pusher:pong``: the answer to our ``pusher:ping``."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``pusher:subscribe``. ``channel_data`` is the exact string received (it is signed)."""

    channel: str
    auth: str | None = None
    channel_data: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``pusher:unsubscribe``."""

    channel: str


@dataclass(frozen=True, slots=True)
class Signin:
    """``pusher:signin``. ``user_data`` is kept as the exact string received (it is signed)."""

    auth: str
    user_data: str


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Any non-``pusher:`` event sent by a client (should be ``client-*``).

    ``data`` is the payload as a JSON text ready to relay: an object sent by the client is
    re-serialised compactly, a string is kept verbatim. ``channel`` is None if absent.
    """

    event: str
    channel: str | None
    data: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """A ``pusher:``/``pusher_internal:`` event this server does not handle (ignored)."""

    event: str


ClientMessage = Ping | Pong | Subscribe | Unsubscribe | Signin | ClientEvent | UnknownEvent


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str) -> Any:
    """Strict JSON: NaN/Infinity refused; ValueError or RecursionError on bad input."""
    return json.loads(text, parse_constant=_reject_constant)


def _text(value: str, what: str) -> str:
    """Refuse strings that cannot be sent back as UTF-8 (lone surrogates from ``\\ud800``)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ProtocolError(f"{what} is not valid Unicode text") from None
    return value


def _object_data(event: str, raw: object) -> dict[str, Any]:
    """The ``data`` of a ``pusher:`` message as a dict; accepts an object or a JSON string."""
    if isinstance(raw, str):
        try:
            raw = _loads(raw)
        except (ValueError, RecursionError):
            raise ProtocolError(f"{event}: data is a string but not valid JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"{event}: data must be a JSON object")
    return raw


def _required_str(event: str, data: Mapping[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{event}: data.{field} must be a non-empty string")
    return _text(value, f"{event}: data.{field}")


def _optional_str(event: str, data: Mapping[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{event}: data.{field} must be a string")
    return _text(value, f"{event}: data.{field}")


def parse_client_message(text: str) -> ClientMessage:
    """Parse one client text frame. Raises ProtocolError with a client-safe message.

    Channel names are *not* validated here (the session does that, so it can answer on the
    channel); event names of client events are checked for type only.
    """
    try:
        message = _loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("message must be a JSON object")
    event = message.get("event")
    if not isinstance(event, str) or not event:
        raise ProtocolError("message.event must be a non-empty string")
    _text(event, "message.event")

    if event == "pusher:ping":
        return Ping()
    if event == "pusher:pong":
        return Pong()
    if event == "pusher:subscribe":
        data = _object_data(event, message.get("data"))
        return Subscribe(
            channel=_required_str(event, data, "channel"),
            auth=_optional_str(event, data, "auth"),
            channel_data=_optional_str(event, data, "channel_data"),
        )
    if event == "pusher:unsubscribe":
        data = _object_data(event, message.get("data"))
        return Unsubscribe(channel=_required_str(event, data, "channel"))
    if event == "pusher:signin":
        data = _object_data(event, message.get("data"))
        return Signin(
            auth=_required_str(event, data, "auth"),
            user_data=_required_str(event, data, "user_data"),
        )
    if event.startswith(("pusher:", "pusher_internal:")):
        return UnknownEvent(event)

    channel = message.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise ProtocolError("message.channel must be a string")
    if channel is not None:
        _text(channel, "message.channel")
    raw = message.get("data")
    data_text = raw if isinstance(raw, str) else json_compact(raw)
    return ClientEvent(event=event, channel=channel, data=_text(data_text, "message.data"))


# --------------------------------------------------------------------------------------------
# Server → client messages


def _frame(event: str, data: Any, channel: str | None = None) -> str:
    """One server frame; ``data`` (a Python value) is double-encoded as a JSON string."""
    message: dict[str, Any] = {"event": event}
    if channel is not None:
        message["channel"] = channel
    message["data"] = json_compact(data)
    return json_compact(message)


def encode_event(event: str, channel: str | None, data: str, user_id: str | None = None) -> str:
    """A channel event frame. ``data`` is the already-serialised payload string, sent verbatim.

    The gateway calls this ONCE per fan-out message and writes the same ``str`` to every
    socket. ``user_id`` is added for client events relayed on presence channels.
    """
    parts = ['{"event":', _encoder.encode(event)]
    if channel is not None:
        parts += [',"channel":', _encoder.encode(channel)]
    parts += [',"data":', _encoder.encode(data)]
    if user_id is not None:
        parts += [',"user_id":', _encoder.encode(user_id)]
    parts.append("}")
    return "".join(parts)


def encode_connection_established(socket_id: str, activity_timeout: int) -> str:
    """``pusher:connection_established``; pusher-js refuses a zero/missing activity_timeout."""
    if activity_timeout <= 0:
        raise ValueError("activity_timeout must be a positive number of seconds")
    return _frame(
        "pusher:connection_established",
        {"socket_id": socket_id, "activity_timeout": activity_timeout},
    )


def encode_ping() -> str:
    """``pusher:ping`` (server asking an idle client for a sign of life)."""
    return _frame("pusher:ping", {})


def encode_pong() -> str:
    """``pusher:pong`` (answer to a client's ``pusher:ping``)."""
    return _frame("pusher:pong", {})


def encode_error(message: str, code: int | None = None) -> str:
    """``pusher:error`` with ``{message, code}``; ``code`` None for non-fatal errors."""
    return _frame("pusher:error", {"message": message, "code": code})


def encode_subscription_succeeded(
    channel: str, presence_members: Mapping[str, Any] | None = None
) -> str:
    """``pusher_internal:subscription_succeeded``.

    For presence channels pass ``presence_members`` (user_id → user_info, one entry per
    distinct user); the data becomes ``{"presence": {"ids", "hash", "count"}}``.
    """
    if presence_members is None:
        return _frame("pusher_internal:subscription_succeeded", {}, channel)
    ids = list(presence_members)
    presence = {"ids": ids, "hash": dict(presence_members), "count": len(ids)}
    return _frame("pusher_internal:subscription_succeeded", {"presence": presence}, channel)


def encode_subscription_error(channel: str, type: str, error: str, status: int) -> str:
    """``pusher:subscription_error`` on the channel, ``{type, error, status}`` (soketi shape).

    Conventional ``type`` values: ``AuthError`` (status 401/403), ``LimitReached``,
    ``InvalidChannel`` (400), ``ServerError`` (500).
    """
    return _frame(
        "pusher:subscription_error", {"type": type, "error": error, "status": status}, channel
    )


def encode_member_added(channel: str, user_id: str, user_info: Any = None) -> str:
    """``pusher_internal:member_added``: send only for a user's first socket on the channel."""
    data: dict[str, Any] = {"user_id": user_id}
    if user_info is not None:
        data["user_info"] = user_info
    return _frame("pusher_internal:member_added", data, channel)


def encode_member_removed(channel: str, user_id: str) -> str:
    """``pusher_internal:member_removed``: send only after a user's last socket left."""
    return _frame("pusher_internal:member_removed", {"user_id": user_id}, channel)


def encode_signin_success(user_data: str) -> str:
    """``pusher:signin_success`` echoing the exact signed ``user_data`` string."""
    return _frame("pusher:signin_success", {"user_data": user_data})


def encode_cache_miss(channel: str) -> str:
    """``pusher:cache_miss``: sent after subscription_succeeded when a cache channel is empty."""
    return _frame("pusher:cache_miss", {}, channel)


def encode_subscription_count(channel: str, count: int) -> str:
    """``pusher_internal:subscription_count`` (non-presence channels only)."""
    return _frame("pusher_internal:subscription_count", {"subscription_count": count}, channel)
