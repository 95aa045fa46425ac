"""The Doshii wire details that are not about orders: the partner socket's frames and the
``Authorization`` header of a Doshii webhook. Sans I/O.

The socket (``doshii-partner-node-sdk``'s ``websocketSetup``) speaks JSON text frames:

* client → server: ``{"doshii": {"ping": <ms>, "version": "…"}}`` every ``pingInterval``;
* server → client: ``{"doshii": {"pong": <ms>}}`` for each ping, and events as
  ``{"emit": [<event name>, <payload>]}``.

The SDK reads ``eventData.emit[0]`` of anything that is not a pong, so nothing else may
ever be sent on that socket: errors are a close frame with a reason (:data:`CLOSE_*`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Final

from ordercast.errors import ProtocolError, ValidationError

# Close codes (RFC 6455 7.4.1 and the application range): what the reason says is for people.
CLOSE_POLICY: Final = 1008  # authentication refused
CLOSE_UNSUPPORTED: Final = 1003  # a binary frame
CLOSE_INVALID: Final = 1007  # not JSON, or not a Doshii ping
CLOSE_GOING_AWAY: Final = 1001  # the server is shutting down
CLOSE_INTERNAL: Final = 1011
CLOSE_TRY_AGAIN_LATER: Final = 1013  # the database cannot be reached right now
MAX_MESSAGE_BYTES: Final = 4096  # a ping is ~60 bytes


@dataclass(frozen=True, slots=True)
class Ping:
    value: Any  # echoed back as the pong's value (the SDK sends Date.now())


def parse_client_text(text: str) -> Ping:
    """A client frame: only a Doshii ping is accepted (ProtocolError otherwise)."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ProtocolError('not JSON: send {"doshii": {"ping": <ms>}}') from exc
    inner = doc.get("doshii") if isinstance(doc, dict) else None
    if not isinstance(inner, dict) or "ping" not in inner:
        raise ProtocolError('only {"doshii": {"ping": …}} is accepted on this socket')
    value = inner["ping"]
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        raise ProtocolError("ping must be a number or a string")
    return Ping(value)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_pong(ping: Ping) -> bytes:
    return _dumps({"doshii": {"pong": ping.value}})


def encode_emit(event: str, payload: Any) -> bytes:
    return _dumps({"emit": [event, payload]})


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2


def client_id_from_auth(value: str) -> str:
    """The SDK's socket ``auth``: ``base64(clientId)`` (standard alphabet, padded)."""
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        client_id = raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError("auth is neither a JWT nor base64(clientId)", field="auth") from exc
    if not client_id or not client_id.isprintable():
        raise ValidationError("auth is neither a JWT nor base64(clientId)", field="auth")
    return client_id


def webhook_authorization(key: str | None, token: str | None) -> str | None:
    """The ``Authorization`` header of a Doshii webhook: ``Basic base64(key:token)`` when the
    partner registered both, ``Bearer <token>`` for a token alone, none otherwise."""
    if key and token:
        return "Basic " + base64.b64encode(f"{key}:{token}".encode()).decode()
    if token:
        return f"Bearer {token}"
    return None
