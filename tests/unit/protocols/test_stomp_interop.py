"""Interop with stomp.py's own frame encoder and parser, bytes only (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from ordercast.protocols.stomp import (
    AckReceived,
    ConnectRequested,
    DisconnectRequested,
    SessionConfig,
    StompSession,
    SubscribeRequested,
    UnsubscribeRequested,
    encode_message,
)

stomp_protocol = pytest.importorskip("stomp.protocol")
stomp_utils = pytest.importorskip("stomp.utils")


class CapturingTransport:
    """Just enough of stomp.py's transport for its Protocol12 to encode frames."""

    vhost = "ordercast"
    current_host_and_port = ("localhost", 6001)

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def transmit(self, frame: Any) -> None:
        self.sent.append(b"".join(stomp_utils.convert_frame(frame)))

    def set_listener(self, name: str, listener: Any) -> None:
        pass

    def is_connected(self) -> bool:
        return True

    def drain(self) -> bytes:
        data, self.sent = b"".join(self.sent), []
        return data


def parse_with_stomp_py(data: bytes) -> Any:
    assert data.endswith(b"\x00")
    return stomp_utils.parse_frame(data[:-1])


def test_stomp_py_client_conversation() -> None:
    transport = CapturingTransport()
    client = stomp_protocol.Protocol12(transport, heartbeats=(4000, 4000))
    session = StompSession(SessionConfig(heart_beat=(5000, 5000)), now=0.0)

    client.connect("token", "secret", headers={"heart-beat": "4000,4000"})
    session.receive_data(transport.drain())
    [connect] = session.events_received()
    assert isinstance(connect, ConnectRequested)
    assert (connect.command, connect.login, connect.passcode, connect.host) == (
        "STOMP",
        "token",
        "secret",
        "ordercast",
    )
    assert connect.heart_beat == (4000, 4000)
    session.accept_connect(now=0.0, session_id="s1")
    connected = parse_with_stomp_py(b"".join(session.data_to_send()))
    assert connected.cmd == "CONNECTED"
    assert connected.headers["version"] == "1.2"
    assert stomp_utils.calculate_heartbeats(
        connected.headers["heart-beat"].replace(" ", "").split(","), (4000, 4000)
    ) == (5000, 5000)

    client.subscribe("/order-changes/u:1/o1", "sub:0", ack="client-individual", receipt="r1")
    session.receive_data(transport.drain())
    [subscribe] = session.events_received()
    assert isinstance(subscribe, SubscribeRequested)
    assert (subscribe.id, subscribe.destination) == ("sub:0", "/order-changes/u:1/o1")
    session.accept_subscription("sub:0")
    receipt = parse_with_stomp_py(b"".join(session.data_to_send()))
    assert (receipt.cmd, receipt.headers["receipt-id"]) == ("RECEIPT", "r1")

    data = session.message_frame(
        "sub:0", encode_message("/order-changes/u:1/o1", "m-1", b'{"a":1}', headers=[("seq", "1")])
    )
    assert data is not None
    message = parse_with_stomp_py(data)
    assert message.cmd == "MESSAGE"
    assert message.headers["subscription"] == "sub:0"
    assert message.headers["destination"] == "/order-changes/u:1/o1"
    assert message.headers["seq"] == "1"
    assert message.body == b'{"a":1}'

    client.ack(message.headers["ack"], receipt="r2")
    session.receive_data(transport.drain())
    [ack] = session.events_received()
    assert isinstance(ack, AckReceived) and ack.message_ids == ("m-1",)
    assert parse_with_stomp_py(b"".join(session.data_to_send())).headers["receipt-id"] == "r2"

    client.unsubscribe("sub:0")
    session.receive_data(transport.drain())
    assert session.events_received() == [
        UnsubscribeRequested("sub:0", "/order-changes/u:1/o1", None)
    ]

    client.send_frame("DISCONNECT", {"receipt": "bye"})  # what disconnect() sends
    session.receive_data(transport.drain())
    assert session.events_received() == [DisconnectRequested("bye")]
    assert parse_with_stomp_py(b"".join(session.data_to_send())).headers["receipt-id"] == "bye"
    assert session.close_request is not None


def test_stomp_py_reads_our_error_frame() -> None:
    session = StompSession()
    session.receive_data(b"SEND\ndestination:/x\n\n\x00")
    error = parse_with_stomp_py(b"".join(session.data_to_send()))
    assert error.cmd == "ERROR"
    assert error.headers["message"] == "expected a CONNECT frame"
    assert error.headers["content-type"] == "text/plain"
    assert int(error.headers["content-length"]) == len(error.body)
