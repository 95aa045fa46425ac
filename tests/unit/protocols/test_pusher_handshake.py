"""Connection URL parsing, close codes, and the purity of the Pusher package."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import ordercast.protocols.pusher as pusher_pkg
from ordercast.errors import ProtocolError
from ordercast.protocols.pusher.codes import CloseCode, Reconnect, reconnect_policy
from ordercast.protocols.pusher.handshake import ConnectionRequest, parse_connection_request


def test_pusher_js_url() -> None:
    request = parse_connection_request("/app/abc123?protocol=7&client=js&version=8.4.0&flash=false")
    assert request == ConnectionRequest("abc123", 7, "js", "8.4.0")


def test_pysher_url_protocol_6() -> None:
    request = parse_connection_request("/app/abc?client=Pysher&version=1.0.7&protocol=6")
    assert request.protocol == 6 and request.client == "Pysher"


def test_protocol_5_accepted_and_trailing_slash() -> None:
    assert parse_connection_request("/app/k/?protocol=5").app_key == "k"


def test_path_prefix() -> None:
    assert parse_connection_request("/ws/app/k?protocol=7", path_prefix="/ws").app_key == "k"
    with pytest.raises(ProtocolError):
        parse_connection_request("/app/k?protocol=7", path_prefix="/ws")


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("/apps/k?protocol=7", 4005),
        ("/app/?protocol=7", 4005),
        ("/app/k/extra?protocol=7", 4005),
        ("/ws", 4005),
        ("/app/k", 4008),
        ("/app/k?protocol=", 4008),
        ("/app/k?client=js&version=8", 4008),
        ("/app/k?protocol=seven", 4006),
        ("/app/k?protocol=7.0", 4006),
        ("/app/k?protocol=-7", 4006),
        ("/app/k?protocol=%C2%B2", 4006),  # superscript two: str.isdigit() but not int()
        ("/app/k?protocol=4", 4007),
        ("/app/k?protocol=8", 4007),
    ],
)
def test_rejections_carry_close_codes(target: str, code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_connection_request(target)
    assert info.value.fields["close_code"] == code


def test_protocol_range_is_configurable() -> None:
    with pytest.raises(ProtocolError):
        parse_connection_request("/app/k?protocol=5", min_protocol=6)


def test_close_codes_match_protocol_7() -> None:
    assert {c.name: c.value for c in CloseCode} == {
        "SSL_ONLY": 4000,
        "APP_NOT_FOUND": 4001,
        "APP_DISABLED": 4003,
        "OVER_CONNECTION_QUOTA": 4004,
        "PATH_NOT_FOUND": 4005,
        "INVALID_VERSION_FORMAT": 4006,
        "UNSUPPORTED_PROTOCOL_VERSION": 4007,
        "NO_PROTOCOL_VERSION": 4008,
        "UNAUTHORIZED": 4009,
        "OVER_CAPACITY": 4100,
        "GENERIC_RECONNECT": 4200,
        "PONG_NOT_RECEIVED": 4201,
        "CLOSED_AFTER_INACTIVITY": 4202,
        "CLIENT_EVENT_RATE_LIMIT": 4301,
    }


@pytest.mark.parametrize(
    ("code", "policy"),
    [
        (4001, Reconnect.NEVER),
        (4099, Reconnect.NEVER),
        (4100, Reconnect.WITH_BACKOFF),
        (4200, Reconnect.IMMEDIATELY),
        (4201, Reconnect.IMMEDIATELY),
        (4301, Reconnect.OTHER),
        (1000, Reconnect.OTHER),
    ],
)
def test_reconnect_policy(code: int, policy: Reconnect) -> None:
    assert reconnect_policy(code) is policy


def test_package_is_pure() -> None:
    """Standard library and ordercast.errors/ordercast.protocols.pusher (and the shared
    credential comparison and session vocabulary) only; no I/O modules."""
    forbidden = {"asyncio", "socket", "time", "random", "secrets", "threading", "selectors"}
    allowed_local = (
        "ordercast.errors",
        "ordercast.protocols.pusher",
        "ordercast.protocols.credentials",
        "ordercast.protocols.session",
    )
    for path in Path(pusher_pkg.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: use absolute imports"
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "ordercast":
                    assert name.startswith(allowed_local), f"{path.name} imports {name}"
                else:
                    assert top in sys.stdlib_module_names, f"{path.name} imports {name}"
                    assert top not in forbidden, f"{path.name} imports {name}"


def test_public_surface_is_exported() -> None:
    for name in pusher_pkg.__all__:
        assert hasattr(pusher_pkg, name)
    assert pusher_pkg.__all__ == sorted(pusher_pkg.__all__)
