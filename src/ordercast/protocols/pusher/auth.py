"""Pusher signatures: channel authorization, user sign-in, webhooks; socket ids; presence data.

Every signature is the lower-case hex HMAC-SHA256 of a string, keyed with the app secret. The
value clients carry is ``"{app_key}:{hex}"``. Strings signed:

* private / encrypted channel: ``"{socket_id}:{channel}"``
* presence channel:            ``"{socket_id}:{channel}:{channel_data}"``
* user sign-in:                ``"{socket_id}::user::{user_data}"``

``channel_data`` and ``user_data`` are verified over the *exact* string received: the Python
SDK serialises with spaces, the Node SDK without, so re-serialising would break signatures.
Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from ordercast.errors import Unauthorized, ValidationError
from ordercast.protocols.credentials import as_bytes, same_secret
from ordercast.protocols.pusher.messages import (
    MAX_CHANNEL_NAME_LENGTH,
    json_compact,
)

__all__ = [
    "MAX_USER_ID_LENGTH",
    "MAX_USER_INFO_BYTES",
    "PresenceMember",
    "SignedInUser",
    "channel_string_to_sign",
    "hmac_sha256_hex",
    "parse_presence_channel_data",
    "parse_user_data",
    "sign_channel",
    "sign_user",
    "user_string_to_sign",
    "validate_socket_id",
    "verify_channel_auth",
    "verify_user_auth",
    "webhook_signature",
]

MAX_USER_ID_LENGTH: Final = 128
MAX_USER_INFO_BYTES: Final = 1024
_SOCKET_ID = re.compile(r"[0-9]+\.[0-9]+")
_USER_ID_CHARS = re.compile(r"[A-Za-z0-9_\-=@,.;]+")


def validate_socket_id(socket_id: object) -> str:
    """Return ``socket_id`` if it looks like ``digits.digits``, else raise ValidationError."""
    if not isinstance(socket_id, str) or _SOCKET_ID.fullmatch(socket_id) is None:
        raise ValidationError(f"invalid socket_id {socket_id!r}: expected digits.digits")
    return socket_id


def hmac_sha256_hex(secret: str, message: str | bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``message`` (UTF-8 if ``str``) keyed with ``secret``."""
    return hmac.new(as_bytes(secret), as_bytes(message), hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return same_secret(a, b)


def _check_auth(app_key: str, secret: str, auth: str | None, signed: str) -> None:
    if not auth:
        raise Unauthorized("missing auth signature")
    key, sep, signature = auth.partition(":")
    if not sep or not signature:
        raise Unauthorized("auth must have the form '<app_key>:<hex signature>'")
    if not _same(key, app_key):
        raise Unauthorized("auth was signed for a different app key")
    expected = hmac_sha256_hex(secret, signed)
    if not _same(signature.lower(), expected):
        raise Unauthorized(
            f"Invalid signature: expected HMAC SHA256 hex digest of {signed!r}, "
            f"but got {signature!r}"
        )


# --------------------------------------------------------------------------------------------
# Channel authorization


def channel_string_to_sign(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """``socket_id:channel`` or, for presence, ``socket_id:channel:channel_data``."""
    if channel_data is None:
        return f"{socket_id}:{channel}"
    return f"{socket_id}:{channel}:{channel_data}"


def sign_channel(
    app_key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None
) -> str:
    """The ``auth`` value an app's auth endpoint returns: ``"{app_key}:{hex signature}"``."""
    signed = channel_string_to_sign(socket_id, channel, channel_data)
    return f"{app_key}:{hmac_sha256_hex(secret, signed)}"


def verify_channel_auth(
    *,
    app_key: str,
    secret: str,
    socket_id: str,
    channel: str,
    auth: str | None,
    channel_data: str | None = None,
) -> None:
    """Raise Unauthorized unless ``auth`` signs this socket's subscription to ``channel``."""
    _check_auth(app_key, secret, auth, channel_string_to_sign(socket_id, channel, channel_data))


# --------------------------------------------------------------------------------------------
# User sign-in


def user_string_to_sign(socket_id: str, user_data: str) -> str:
    """``socket_id::user::user_data``."""
    return f"{socket_id}::user::{user_data}"


def sign_user(app_key: str, secret: str, socket_id: str, user_data: str) -> str:
    """The ``auth`` value a user-authentication endpoint returns."""
    return f"{app_key}:{hmac_sha256_hex(secret, user_string_to_sign(socket_id, user_data))}"


def verify_user_auth(
    *, app_key: str, secret: str, socket_id: str, auth: str | None, user_data: str
) -> None:
    """Raise Unauthorized unless ``auth`` signs ``user_data`` for this socket."""
    _check_auth(app_key, secret, auth, user_string_to_sign(socket_id, user_data))


# --------------------------------------------------------------------------------------------
# Webhooks (server → app)


def webhook_signature(secret: str, body: bytes) -> str:
    """``X-Pusher-Signature``: hex HMAC-SHA256 of the raw webhook body."""
    return hmac_sha256_hex(secret, body)


# --------------------------------------------------------------------------------------------
# Presence channel_data and sign-in user_data


@dataclass(frozen=True, slots=True)
class PresenceMember:
    """One presence member: ``user_id`` (always a string on our side) and opaque ``user_info``."""

    user_id: str
    user_info: Any = None


def _user_id(value: object, *, field: str, max_length: int) -> str:
    # Pusher's own example uses a number ("user_id": 10); numbers are accepted and stringified.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(f"{field} must be a string or an integer")
    text = str(value)
    if not text:
        raise ValidationError(f"{field} must not be empty")
    if len(text) > max_length:
        raise ValidationError(f"{field} is {len(text)} characters long; the limit is {max_length}")
    return text


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(text: str, what: str) -> dict[str, Any]:
    """Strict JSON object whose strings can be re-sent as UTF-8 (no NaN, no lone surrogates)."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
        json_compact(value).encode()
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        raise ValidationError(f"{what} is not valid JSON text") from None
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a JSON object")
    return value


def parse_presence_channel_data(
    channel_data: str | None,
    *,
    max_user_id_length: int = MAX_USER_ID_LENGTH,
    max_user_info_bytes: int = MAX_USER_INFO_BYTES,
) -> PresenceMember:
    """Validate a presence subscription's ``channel_data`` JSON ``{user_id, user_info?}``."""
    if channel_data is None:
        raise ValidationError("presence channels need channel_data with a user_id")
    data = _json_object(channel_data, "channel_data")
    if "user_id" not in data:
        raise ValidationError("channel_data.user_id is required")
    user_id = _user_id(data["user_id"], field="channel_data.user_id", max_length=max_user_id_length)
    user_info = data.get("user_info")
    if user_info is not None:
        size = len(json_compact(user_info).encode())
        if size > max_user_info_bytes:
            raise ValidationError(
                f"channel_data.user_info is {size} bytes; the limit is {max_user_info_bytes}"
            )
    return PresenceMember(user_id=user_id, user_info=user_info)


@dataclass(frozen=True, slots=True)
class SignedInUser:
    """A signed-in user. ``user_data`` is the exact signed string (echoed in signin_success)."""

    id: str
    user_data: str
    user_info: Any = None
    watchlist: tuple[str, ...] = ()


def parse_user_data(user_data: str, *, max_watchlist: int = 100) -> SignedInUser:
    """Validate sign-in ``user_data``: JSON ``{id, user_info?, watchlist?}``, ``id`` a string.

    The id must also be usable in ``#server-to-user-{id}`` (channel-name characters).
    """
    data = _json_object(user_data, "user_data")
    user_id = data.get("id")
    # pusher-js insists on a non-empty string id after signin_success.
    if not isinstance(user_id, str) or not user_id:
        raise ValidationError("user_data.id must be a non-empty string")
    limit = MAX_CHANNEL_NAME_LENGTH - len("#server-to-user-")
    if len(user_id) > limit or _USER_ID_CHARS.fullmatch(user_id) is None:
        raise ValidationError(
            f"user_data.id must be at most {limit} characters from A-Z a-z 0-9 _ - = @ , . ;"
        )
    raw_watchlist = data.get("watchlist", [])
    if not isinstance(raw_watchlist, list) or not all(
        isinstance(item, str) and item for item in raw_watchlist
    ):
        raise ValidationError("user_data.watchlist must be a list of user id strings")
    if len(raw_watchlist) > max_watchlist:
        raise ValidationError(
            f"user_data.watchlist has {len(raw_watchlist)} ids; the limit is {max_watchlist}"
        )
    return SignedInUser(
        id=user_id,
        user_data=user_data,
        user_info=data.get("user_info"),
        watchlist=tuple(raw_watchlist),
    )
