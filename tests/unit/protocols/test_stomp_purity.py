"""The STOMP core is pure: standard library, ordercast.errors and the shared session vocabulary
(ordercast.protocols.session) only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import ordercast.protocols.stomp as stomp

PACKAGE_DIR = Path(stomp.__file__).parent
FORBIDDEN = {"asyncio", "socket", "time", "random", "threading", "selectors", "ssl"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_only_stdlib_and_ordercast_errors() -> None:
    files = sorted(PACKAGE_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "frames.py", "session.py", "messages.py"}
    for path in files:
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "ordercast":  # the shared session vocabulary is pure too
                assert name in ("ordercast.errors", "ordercast.protocols.session"), (
                    f"{path.name} imports {name}"
                )
            else:
                assert top in sys.stdlib_module_names, f"{path.name} imports {name}"
                assert top not in FORBIDDEN, (
                    f"{path.name} imports {name} (I/O, clock or randomness)"
                )


def test_public_surface() -> None:
    assert set(stomp.__all__) == {
        "ACK_MODES", "CLIENT_COMMANDS", "HEARTBEAT_EOL", "SERVER_COMMANDS", "SUPPORTED_VERSIONS",
        "AckReceived", "ConnectRequested", "DisconnectRequested", "EncodedMessage", "ErrorReason",
        "ErrorSent", "Event", "Frame", "FrameParser", "FrameTooLarge", "MalformedFrame", "NackReceived",
        "SessionConfig", "SessionState", "StompSession", "SubscribeRequested", "Subscription",
        "UnsubscribeRequested", "encode_message", "escape_header", "negotiate_heartbeat",
        "negotiate_version", "select_subprotocol", "serialize", "subscription_prefix",
        "unescape_header",
    }  # fmt: skip
    for name in stomp.__all__:
        assert hasattr(stomp, name)
