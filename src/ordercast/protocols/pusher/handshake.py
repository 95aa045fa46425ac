"""Parse the WebSocket upgrade target ``/app/{key}?protocol=7&client=js&version=…``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

from ordercast.errors import ProtocolError
from ordercast.protocols.pusher.codes import CloseCode

__all__ = ["MAX_PROTOCOL", "MIN_PROTOCOL", "ConnectionRequest", "parse_connection_request"]

MIN_PROTOCOL: Final = 5
MAX_PROTOCOL: Final = 7


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    """What a client asked for when it opened the socket."""

    app_key: str
    protocol: int
    client: str | None = None
    version: str | None = None


def _reject(code: CloseCode, message: str) -> ProtocolError:
    return ProtocolError(message, close_code=int(code))


def parse_connection_request(
    target: str,
    *,
    path_prefix: str = "",
    min_protocol: int = MIN_PROTOCOL,
    max_protocol: int = MAX_PROTOCOL,
) -> ConnectionRequest:
    """Parse the request target of the upgrade (path plus query string).

    Raises ProtocolError whose ``fields["close_code"]`` says how to refuse the connection:
    4005 path not found, 4008 no ``protocol``, 4006 ``protocol`` is not an integer, 4007
    protocol outside ``min_protocol..max_protocol``. The adapter then sends
    ``encode_error(exc.detail, code)`` and closes with that code. Looking up the app key
    (4001 unknown, 4003 disabled, 4004 over quota) is the adapter's job.
    """
    parts = urlsplit(target)
    path = parts.path
    expected = f"{path_prefix.rstrip('/')}/app/"
    if not path.startswith(expected):
        raise _reject(CloseCode.PATH_NOT_FOUND, f"Path not found: {path}")
    app_key = unquote(path[len(expected) :].rstrip("/"))
    if not app_key or "/" in app_key:
        raise _reject(CloseCode.PATH_NOT_FOUND, f"Path not found: {path}")

    query = parse_qs(parts.query, keep_blank_values=True)
    raw_protocol = query.get("protocol", [""])[-1]
    if not raw_protocol:
        raise _reject(CloseCode.NO_PROTOCOL_VERSION, "No protocol version supplied")
    if not (raw_protocol.isascii() and raw_protocol.isdigit()):
        raise _reject(
            CloseCode.INVALID_VERSION_FORMAT, f"Invalid version string format: {raw_protocol!r}"
        )
    protocol = int(raw_protocol)
    if not min_protocol <= protocol <= max_protocol:
        raise _reject(
            CloseCode.UNSUPPORTED_PROTOCOL_VERSION,
            f"Unsupported protocol version {protocol}; supported: {min_protocol}-{max_protocol}",
        )
    client = query.get("client", [None])[-1]
    version = query.get("version", [None])[-1]
    return ConnectionRequest(app_key=app_key, protocol=protocol, client=client, version=version)
