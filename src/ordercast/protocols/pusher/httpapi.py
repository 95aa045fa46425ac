"""Pusher HTTP API: request-signature verification and request-body validation (pure).

Signing, as the official server SDKs do it (``auth_version=1.0``): the query carries
``auth_key``, ``auth_timestamp`` (Unix seconds), ``auth_version=1.0``, ``body_md5`` (hex MD5 of
the body; the Python SDK sends it on GETs too, as the MD5 of the empty body) and
``auth_signature`` = hex HMAC-SHA256(secret, ``"METHOD\\nPATH\\nQUERY"``), where QUERY is every
parameter except ``auth_signature``, keys lower-cased, sorted by key, joined as ``k=v&k=v``
with the *decoded* values (no URL escaping).

Callers pass the raw request path and the URL-decoded query pairs. Failures raise
:class:`~ordercast.errors.Unauthorized` (bad signature/credentials, HTTP 401) or
:class:`~ordercast.errors.ValidationError` (bad body, HTTP 400; with ``fields["too_large"]``
True when a size limit was exceeded, which the HTTP edge answers with 413).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ordercast.errors import Unauthorized, ValidationError
from ordercast.protocols.credentials import same_secret
from ordercast.protocols.pusher.auth import hmac_sha256_hex, validate_socket_id
from ordercast.protocols.pusher.messages import (
    MAX_DATA_BYTES,
    ChannelKind,
    channel_kind,
    is_cache_channel,
    json_compact,
    validate_channel_name,
    validate_event_name,
)

__all__ = [
    "AUTH_TIMESTAMP_WINDOW",
    "ChannelsQuery",
    "HttpApiLimits",
    "TriggerEvent",
    "auth_key_of",
    "body_md5",
    "channel_attributes",
    "parse_batch",
    "parse_channel_info",
    "parse_channels_query",
    "parse_trigger",
    "sign_request",
    "string_to_sign",
    "validate_users_channel",
    "verify_request",
]

AUTH_TIMESTAMP_WINDOW: Final = 600
_TRIGGER_INFO: Final = frozenset({"user_count", "subscription_count"})
_CHANNEL_INFO: Final = frozenset({"user_count", "subscription_count", "cache"})

Query = Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class HttpApiLimits:
    """Pusher's published limits; override per deployment if needed."""

    max_data_bytes: int = MAX_DATA_BYTES
    max_channels_per_trigger: int = 100
    max_batch_events: int = 10


DEFAULT_LIMITS: Final = HttpApiLimits()


# --------------------------------------------------------------------------------------------
# Signature


def _params(query: Query) -> dict[str, str]:
    """Query pairs as a dict with lower-cased keys; a repeated key is rejected."""
    items = query.items() if isinstance(query, Mapping) else query
    params: dict[str, str] = {}
    for key, value in items:
        lowered = key.lower()
        if lowered in params:
            raise Unauthorized(f"query parameter {key!r} is repeated; cannot verify signature")
        params[lowered] = value
    return params


def body_md5(body: bytes) -> str:
    """Hex MD5 of a request body (the ``body_md5`` parameter)."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def string_to_sign(method: str, path: str, query: Query) -> str:
    """``METHOD\\nPATH\\nk=v&…`` over every parameter except ``auth_signature``."""
    params = _params(query)
    params.pop("auth_signature", None)
    joined = "&".join(f"{key}={params[key]}" for key in sorted(params))
    return f"{method.upper()}\n{path}\n{joined}"


def auth_key_of(query: Query) -> str:
    """The ``auth_key`` parameter, to look up the app (and its secret) before verifying."""
    key = _params(query).get("auth_key")
    if not key:
        raise Unauthorized("missing auth_key query parameter")
    return key


def sign_request(
    *,
    method: str,
    path: str,
    query: Mapping[str, str] | None = None,
    body: bytes = b"",
    app_key: str,
    secret: str,
    timestamp: int,
    always_body_md5: bool = False,
) -> dict[str, str]:
    """Return ``query`` plus the auth parameters, signed like the server SDKs do.

    ``always_body_md5=True`` mimics the Python SDK (``body_md5`` even for an empty body).
    """
    params = {key.lower(): value for key, value in (query or {}).items()}
    params.update(auth_key=app_key, auth_timestamp=str(timestamp), auth_version="1.0")
    if body or always_body_md5:
        params["body_md5"] = body_md5(body)
    params["auth_signature"] = hmac_sha256_hex(secret, string_to_sign(method, path, params))
    return params


def verify_request(
    *,
    method: str,
    path: str,
    query: Query,
    body: bytes,
    app_key: str,
    secret: str,
    now: float,
    window: int = AUTH_TIMESTAMP_WINDOW,
) -> None:
    """Raise Unauthorized unless the request is signed by ``app_key``/``secret``.

    Checks: ``auth_key`` is ``app_key``; ``auth_version`` is ``1.0``; ``auth_timestamp`` is
    within ``window`` seconds of ``now``; ``body_md5`` is present for a non-empty body and, when
    present, matches; ``auth_signature`` matches (constant-time).
    """
    params = _params(query)
    key = params.get("auth_key")
    if not key:
        raise Unauthorized("missing auth_key query parameter")
    if not same_secret(key, app_key):
        raise Unauthorized("unknown auth_key")
    if params.get("auth_version") != "1.0":
        raise Unauthorized("auth_version must be 1.0")
    raw_timestamp = params.get("auth_timestamp", "")
    if not (raw_timestamp.isascii() and raw_timestamp.isdigit()):
        raise Unauthorized("auth_timestamp must be a Unix time in seconds")
    skew = int(raw_timestamp) - now
    if abs(skew) > window:
        raise Unauthorized(
            f"auth_timestamp is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the "
            f"server clock; the limit is {window} s"
        )
    signature = params.get("auth_signature")
    if not signature:
        raise Unauthorized("missing auth_signature query parameter")
    declared_md5 = params.get("body_md5")
    if declared_md5 is None:
        if body:
            raise Unauthorized("missing body_md5 query parameter for a request with a body")
    elif not same_secret(declared_md5.lower(), body_md5(body)):
        raise Unauthorized("body_md5 does not match the request body")
    expected = hmac_sha256_hex(secret, string_to_sign(method, path, params))
    if not same_secret(signature.lower(), expected):
        raise Unauthorized(
            "Invalid signature: expected HMAC SHA256 hex digest of "
            f"{string_to_sign(method, path, params)!r}"
        )


# --------------------------------------------------------------------------------------------
# Trigger bodies


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """One event to publish: ``data`` is the verbatim string to relay to subscribers.

    ``socket_id`` names the connection to exclude; ``info`` the attributes to report back.
    """

    name: str
    channels: tuple[str, ...]
    data: str
    socket_id: str | None = None
    info: frozenset[str] = frozenset()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_body(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    """The body as a JSON object; NaN/Infinity and lone surrogates are refused."""
    try:
        value = (
            dict(body)
            if isinstance(body, Mapping)
            else json.loads(body, parse_constant=_reject_constant)
        )
        json_compact(value).encode()
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        raise ValidationError("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValidationError("request body must be a JSON object")
    return value


def _info(value: object, allowed: frozenset[str], where: str) -> frozenset[str]:
    if value is None or value == "":
        return frozenset()
    if not isinstance(value, str):
        raise ValidationError(f"{where}info must be a comma-separated string")
    attributes = frozenset(part.strip() for part in value.split(",") if part.strip())
    unknown = attributes - allowed
    if unknown:
        raise ValidationError(
            f"{where}info has unknown attribute(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    return attributes


def _event(
    item: Mapping[str, Any], limits: HttpApiLimits, *, where: str, batch: bool
) -> TriggerEvent:
    try:
        name = validate_event_name(item.get("name"))
    except ValidationError as exc:
        raise ValidationError(f"{where}name: {exc.detail}") from None

    data = item.get("data")
    if not isinstance(data, str):
        raise ValidationError(f"{where}data must be a string (JSON-encode objects before sending)")
    size = len(data.encode())
    if size > limits.max_data_bytes:
        raise ValidationError(
            f"{where}data is {size} bytes; the limit is {limits.max_data_bytes}",
            too_large=True,
        )

    channel = item.get("channel")
    channels = item.get("channels")
    if batch and channels is not None:
        raise ValidationError(f"{where}batch events take a single 'channel', not 'channels'")
    if channel is not None and channels is not None:
        raise ValidationError(f"{where}give either 'channel' or 'channels', not both")
    if channels is None:
        if channel is None:
            raise ValidationError(f"{where}channel is required")
        channels = [channel]
    if not isinstance(channels, list) or not channels:
        raise ValidationError(f"{where}channels must be a non-empty list of channel names")
    if len(channels) > limits.max_channels_per_trigger:
        raise ValidationError(
            f"{where}channels has {len(channels)} entries; the limit is "
            f"{limits.max_channels_per_trigger}"
        )
    try:
        names = tuple(dict.fromkeys(validate_channel_name(ch) for ch in channels))
    except ValidationError as exc:
        raise ValidationError(f"{where}{exc.detail}") from None
    if len(names) > 1 and any(channel_kind(ch) is ChannelKind.PRIVATE_ENCRYPTED for ch in names):
        raise ValidationError(f"{where}an event for an encrypted channel must have one channel")

    socket_id = item.get("socket_id")
    if socket_id is not None:
        try:
            validate_socket_id(socket_id)
        except ValidationError as exc:
            raise ValidationError(f"{where}{exc.detail}") from None

    return TriggerEvent(
        name=name,
        channels=names,
        data=data,
        socket_id=socket_id,
        info=_info(item.get("info"), _TRIGGER_INFO, where),
    )


def parse_trigger(
    body: bytes | str | Mapping[str, Any], limits: HttpApiLimits = DEFAULT_LIMITS
) -> TriggerEvent:
    """Validate ``POST /apps/{id}/events``: ``{name, data, channel|channels, socket_id?, info?}``.

    Raises ValidationError (``fields["too_large"]`` set for size limits).
    """
    return _event(_json_body(body), limits, where="", batch=False)


def parse_batch(
    body: bytes | str | Mapping[str, Any], limits: HttpApiLimits = DEFAULT_LIMITS
) -> tuple[TriggerEvent, ...]:
    """Validate ``POST /apps/{id}/batch_events``: ``{"batch": [{name, channel, data, …}]}``."""
    batch = _json_body(body).get("batch")
    if not isinstance(batch, list) or not batch:
        raise ValidationError("batch must be a non-empty list of events")
    if len(batch) > limits.max_batch_events:
        raise ValidationError(
            f"batch has {len(batch)} events; the limit is {limits.max_batch_events}",
            too_large=True,
        )
    events = []
    for index, item in enumerate(batch):
        if not isinstance(item, dict):
            raise ValidationError(f"batch[{index}] must be a JSON object")
        events.append(_event(item, limits, where=f"batch[{index}].", batch=True))
    return tuple(events)


def channel_attributes(
    channel: str, info: frozenset[str], *, user_count: int, subscription_count: int
) -> dict[str, int]:
    """The ``info`` attributes that apply to ``channel`` for a trigger response.

    ``user_count`` (distinct users) is reported for presence channels only,
    ``subscription_count`` (connections) for every other channel.
    """
    presence = channel_kind(channel) is ChannelKind.PRESENCE
    attributes: dict[str, int] = {}
    if "user_count" in info and presence:
        attributes["user_count"] = user_count
    if "subscription_count" in info and not presence:
        attributes["subscription_count"] = subscription_count
    return attributes


# --------------------------------------------------------------------------------------------
# Channel queries


@dataclass(frozen=True, slots=True)
class ChannelsQuery:
    """``GET /apps/{id}/channels`` parameters."""

    filter_by_prefix: str | None
    info: frozenset[str]


def parse_channels_query(query: Query) -> ChannelsQuery:
    """Validate ``filter_by_prefix`` and ``info``; ``user_count`` needs a ``presence-`` prefix."""
    params = {key: value for key, value in _params(query).items() if not key.startswith("auth_")}
    prefix = params.get("filter_by_prefix") or None
    info = _info(params.get("info"), _TRIGGER_INFO, "")
    if "user_count" in info and not (prefix or "").startswith("presence-"):
        raise ValidationError("info=user_count requires filter_by_prefix=presence-")
    return ChannelsQuery(filter_by_prefix=prefix, info=info)


def parse_channel_info(channel: str, query: Query) -> frozenset[str]:
    """Validate ``GET /apps/{id}/channels/{channel}``: the name and the applicable ``info``.

    ``user_count`` only on presence channels, ``cache`` only on cache channels.
    """
    validate_channel_name(channel)
    info = _info(_params(query).get("info"), _CHANNEL_INFO, "")
    if "user_count" in info and channel_kind(channel) is not ChannelKind.PRESENCE:
        raise ValidationError("info=user_count is only available for presence channels")
    if "cache" in info and not is_cache_channel(channel):
        raise ValidationError("info=cache is only available for cache channels")
    return info


def validate_users_channel(channel: str) -> str:
    """``GET /apps/{id}/channels/{channel}/users`` is for presence channels only."""
    validate_channel_name(channel)
    if channel_kind(channel) is not ChannelKind.PRESENCE:
        raise ValidationError("users can only be listed for presence channels")
    return channel
