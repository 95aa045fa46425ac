"""Server-side STOMP session: bytes in, events out, bytes to send. No sockets, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from ordercast.protocols.session import CloseRequest
from ordercast.protocols.stomp import (
    AckReceived,
    ConnectRequested,
    DisconnectRequested,
    ErrorReason,
    ErrorSent,
    Frame,
    FrameParser,
    NackReceived,
    SessionConfig,
    SessionState,
    StompSession,
    SubscribeRequested,
    UnsubscribeRequested,
    encode_message,
    negotiate_heartbeat,
    negotiate_version,
    select_subprotocol,
    serialize,
)

STOMPJS_CONNECT = serialize(
    Frame(
        "CONNECT",
        [
            ("login", "eyJ.token.sig"),
            ("passcode", ""),
            ("accept-version", "1.2,1.1,1.0"),
            ("heart-beat", "4000,4000"),
        ],
    )
)


def raw(command: str, *headers: tuple[str, str], body: bytes = b"") -> bytes:
    return serialize(Frame(command, list(headers), body))


def sent_frames(session: StompSession, *, escape: bool = True) -> list[Frame]:
    parser = FrameParser(unescape=escape)
    for chunk in session.data_to_send():
        parser.feed(chunk)
    return parser.frames()


def only_error(session: StompSession) -> Frame:
    [frame] = sent_frames(session)
    assert frame.command == "ERROR"
    assert session.close_request is not None
    assert session.state is SessionState.CLOSING
    return frame


def connected(connect: bytes = STOMPJS_CONNECT, now: float = 0.0, **config: Any) -> StompSession:
    session = StompSession(SessionConfig(**config), now=now)
    session.receive_data(connect, now=now)
    [event] = session.events_received()
    assert isinstance(event, ConnectRequested)
    session.accept_connect(now=now, session_id="sess-1")
    [frame] = sent_frames(session)
    assert frame.command == "CONNECTED"
    return session


def subscribed(
    session: StompSession, sub_id: str = "sub-0", destination: str = "/kds/t/v", **extra: str
) -> None:
    headers = [("id", sub_id), ("destination", destination), *extra.items()]
    session.receive_data(raw("SUBSCRIBE", *headers))
    [event] = session.events_received()
    assert isinstance(event, SubscribeRequested)
    session.accept_subscription(sub_id)


# -- CONNECT ------------------------------------------------------------------------------------


def test_connect_event_and_connected_frame() -> None:
    session = StompSession(now=0.0)
    assert session.state is SessionState.AWAITING_CONNECT
    session.receive_data(STOMPJS_CONNECT, now=1.0)
    [event] = session.events_received()
    assert isinstance(event, ConnectRequested)
    assert event == ConnectRequested(
        command="CONNECT",
        login="eyJ.token.sig",
        passcode="",
        host=None,
        accept_version=("1.2", "1.1", "1.0"),
        heart_beat=(4000, 4000),
        version="1.2",
        headers=event.headers,
    )
    assert event.headers["heart-beat"] == "4000,4000"
    assert session.state.value == "connecting"
    assert session.awaiting is event
    assert session.data_to_send() == []

    session.accept_connect(now=1.0, session_id="s-42", headers=[("user-name", "u1")])
    [frame] = sent_frames(session)
    assert frame == Frame(
        "CONNECTED",
        [
            ("version", "1.2"),
            ("heart-beat", "10000,10000"),
            ("session", "s-42"),
            ("server", "ordercast"),
            ("user-name", "u1"),
        ],
    )
    assert session.state.value == "connected"
    assert session.version == "1.2"
    assert session.heartbeat == (10000, 10000)
    assert session.close_request is None


def test_stomp_command_is_handled_like_connect() -> None:
    session = StompSession()
    session.receive_data(
        raw("STOMP", ("accept-version", "1.2"), ("host", "vh"), ("login", "u"), ("passcode", "p"))
    )
    [event] = session.events_received()
    assert isinstance(event, ConnectRequested)
    assert (event.command, event.host, event.login, event.passcode) == ("STOMP", "vh", "u", "p")
    assert event.heart_beat == (0, 0)


def test_connect_headers_are_not_unescaped() -> None:
    session = StompSession()
    session.receive_data(b"CONNECT\naccept-version:1.2\nlogin:a\\cb\npasscode:null\n\n\x00")
    [event] = session.events_received()
    assert isinstance(event, ConnectRequested)
    assert event.login == "a\\cb"
    assert event.passcode == "null"


def test_server_override_and_no_server_header() -> None:
    session = StompSession(SessionConfig(server=None))
    session.receive_data(STOMPJS_CONNECT)
    session.accept_connect(now=0.0, heart_beat=(0, 0))
    [frame] = sent_frames(session)
    assert frame.headers == [("version", "1.2"), ("heart-beat", "0,0")]

    session = StompSession()
    session.receive_data(STOMPJS_CONNECT)
    session.accept_connect(now=0.0, server="ordercast/0.1.0")
    [frame] = sent_frames(session)
    assert frame.get("server") == "ordercast/0.1.0"


@pytest.mark.parametrize(
    ("accept_version", "expected"),
    [
        (None, "1.0"),
        ("1.0", "1.0"),
        ("1.1", "1.1"),
        ("1.2", "1.2"),
        ("1.0,1.1", "1.1"),
        ("1.2,1.1,1.0", "1.2"),
        ("1.1, 1.2", "1.2"),
        ("1.2,2.1", "1.2"),
    ],
)
def test_version_negotiation(accept_version: str | None, expected: str) -> None:
    headers = [] if accept_version is None else [("accept-version", accept_version)]
    session = StompSession()
    session.receive_data(raw("CONNECT", *headers))
    [event] = session.events_received()
    assert isinstance(event, ConnectRequested)
    assert event.version == expected
    session.accept_connect(now=0.0)
    [frame] = sent_frames(session)
    assert frame.get("version") == expected


def test_version_negotiation_respects_configured_versions() -> None:
    assert negotiate_version(["1.0", "1.1"], ["1.2"]) is None
    assert negotiate_version(["1.2", "1.1"], ["1.1", "1.0"]) == "1.1"
    assert negotiate_version([], ["1.2"]) is None


def test_unsupported_version_is_an_error_with_version_header() -> None:
    session = StompSession()
    session.receive_data(raw("CONNECT", ("accept-version", "2.0,3.1")))
    [event] = session.events_received()
    assert isinstance(event, ErrorSent) and event.reason == "unsupported_version"
    error = only_error(session)
    assert error.get("version") == "1.2,1.1,1.0"
    assert error.get("content-type") == "text/plain"
    assert int(error.get("content-length") or -1) == len(error.body)
    assert b"1.2,1.1,1.0" in error.body


def test_connect_with_body_is_rejected() -> None:
    session = StompSession()
    session.receive_data(raw("CONNECT", ("accept-version", "1.2"), body=b"hi"))
    assert only_error(session).get("message") == "CONNECT frames must not have a body"


@pytest.mark.parametrize("value", ["1000", "a,b", "1,2,3", "-1,0", ""])
def test_malformed_heart_beat_header(value: str) -> None:
    session = StompSession()
    session.receive_data(raw("CONNECT", ("accept-version", "1.2"), ("heart-beat", value)))
    assert only_error(session).get("message") == "invalid heart-beat header"


def test_reject_connect() -> None:
    session = StompSession()
    session.receive_data(STOMPJS_CONNECT)
    session.events_received()
    session.reject("authentication failed", "token expired")
    error = only_error(session)
    assert error.headers == [
        ("message", "authentication failed"),
        ("content-type", "text/plain"),
        ("content-length", "13"),
    ]
    assert error.body == b"token expired"
    [event] = session.events_received()
    assert event == ErrorSent(ErrorReason.REJECTED, "authentication failed", "token expired")
    assert session.close_request == CloseRequest(1008)
    # Nothing more happens after closing.
    session.receive_data(raw("SUBSCRIBE", ("id", "0"), ("destination", "/d")))
    assert session.events_received() == []
    assert session.data_to_send() == []


def test_error_before_connected_is_not_escaped_and_stays_on_one_line() -> None:
    session = StompSession()
    session.receive_data(STOMPJS_CONNECT)
    session.reject("bad: token\nreally", "line1\nline2")
    data = b"".join(session.data_to_send())
    assert data.startswith(b"ERROR\nmessage:bad: token really\n")
    assert data.endswith(b"\n\nline1\nline2\x00")


def test_frames_after_connect_wait_for_the_decision() -> None:
    session = StompSession()
    session.receive_data(
        STOMPJS_CONNECT + raw("SUBSCRIBE", ("id", "sub-0"), ("destination", "/kds/t/v"))
    )
    events = session.events_received()
    assert [type(e) for e in events] == [ConnectRequested]
    session.accept_connect(now=0.0)
    [event] = session.events_received()
    assert isinstance(event, SubscribeRequested) and event.id == "sub-0"


def test_pipelined_frames_after_a_rejected_connect_are_ignored() -> None:
    session = StompSession()
    session.receive_data(STOMPJS_CONNECT + raw("SUBSCRIBE", ("id", "0"), ("destination", "/d")))
    session.events_received()
    session.reject("authentication failed")
    assert [type(e) for e in session.events_received()] == [ErrorSent]


def test_too_much_data_while_a_decision_is_pending() -> None:
    session = StompSession(SessionConfig(max_pending_bytes=100))
    session.receive_data(STOMPJS_CONNECT)
    session.receive_data(b"\n" * 50 + b"SUBSCRIBE\nid:0\n")
    assert session.close_request is None
    session.receive_data(b"x" * 100)
    assert session.events_received()[-1].reason == "too_much_pending_data"  # type: ignore[union-attr]
    assert only_error(session).get("message") == "too much data while a request is pending"


def test_second_connect_is_an_error() -> None:
    session = connected()
    session.receive_data(STOMPJS_CONNECT)
    assert only_error(session).get("message") == "already connected"


def test_misuse_of_decisions_raises() -> None:
    session = StompSession()
    with pytest.raises(RuntimeError):
        session.accept_connect(now=0.0)
    with pytest.raises(RuntimeError):
        session.accept_subscription("0")
    session = connected()
    with pytest.raises(RuntimeError):
        session.accept_connect(now=0.0)


def test_decisions_after_close_are_no_ops() -> None:
    session = StompSession()
    session.receive_data(STOMPJS_CONNECT)
    session.connection_lost()
    assert session.state is SessionState.CLOSED
    session.accept_connect(now=0.0)
    assert session.accept_subscription("x") is None
    session.reject("late")
    session.receive_data(STOMPJS_CONNECT)
    assert session.data_to_send() == []
    assert [type(e) for e in session.events_received()] == [ConnectRequested]


# -- frames before CONNECT ----------------------------------------------------------------------


def test_frame_before_connect_is_an_error_with_receipt_id() -> None:
    session = StompSession()
    session.receive_data(b"\n\n")  # heart-beats before CONNECT are fine
    assert session.data_to_send() == []
    session.receive_data(raw("SUBSCRIBE", ("id", "0"), ("destination", "/d"), ("receipt", "r1")))
    error = only_error(session)
    assert error.get("message") == "expected a CONNECT frame"
    assert error.get("receipt-id") == "r1"
    [event] = session.events_received()
    assert isinstance(event, ErrorSent) and event.reason == "not_connected"


# -- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------------------------------


def test_subscribe_with_custom_headers_and_receipt() -> None:
    session = connected()
    session.receive_data(
        raw(
            "SUBSCRIBE",
            ("id", "sub-0"),
            ("destination", "/order-changes/u1/o1"),
            ("x-since-seq", "41"),
            ("x-venue", "v9"),
            ("receipt", "r-7"),
        )
    )
    [event] = session.events_received()
    assert isinstance(event, SubscribeRequested)
    assert (event.id, event.destination, event.ack, event.receipt) == (
        "sub-0",
        "/order-changes/u1/o1",
        "auto",
        "r-7",
    )
    assert event.headers["x-since-seq"] == "41"
    assert event.headers["x-venue"] == "v9"
    assert session.data_to_send() == []  # receipt only once processed

    sub = session.accept_subscription("sub-0")
    assert sub is not None and sub.destination == "/order-changes/u1/o1"
    assert session.subscriptions["sub-0"] is sub
    assert sent_frames(session) == [Frame("RECEIPT", [("receipt-id", "r-7")])]


def test_subscribe_headers_are_unescaped() -> None:
    session = connected()
    session.receive_data(b"SUBSCRIBE\nid:a\\cb\ndestination:/d\\\\e\n\n\x00")
    [event] = session.events_received()
    assert isinstance(event, SubscribeRequested)
    assert (event.id, event.destination) == ("a:b", "/d\\e")


@pytest.mark.parametrize("ack", ["auto", "client", "client-individual"])
def test_ack_modes_accepted(ack: str) -> None:
    session = connected()
    subscribed(session, ack=ack)
    assert session.subscriptions["sub-0"].ack == ack


def test_invalid_ack_mode() -> None:
    session = connected()
    session.receive_data(raw("SUBSCRIBE", ("id", "0"), ("destination", "/d"), ("ack", "never")))
    assert only_error(session).get("message") == "invalid ack mode"


@pytest.mark.parametrize("missing", ["id", "destination"])
def test_subscribe_missing_required_header(missing: str) -> None:
    headers = [h for h in [("id", "0"), ("destination", "/d"), ("receipt", "r")] if h[0] != missing]
    session = connected()
    session.receive_data(raw("SUBSCRIBE", *headers))
    error = only_error(session)
    assert error.get("message") == f"missing {missing} header"
    assert error.get("receipt-id") == "r"


def test_duplicate_subscription_id() -> None:
    session = connected()
    subscribed(session, "sub-0")
    session.receive_data(raw("SUBSCRIBE", ("id", "sub-0"), ("destination", "/x"), ("receipt", "9")))
    error = only_error(session)
    assert error.get("message") == "duplicate subscription id"
    assert error.get("receipt-id") == "9"
    assert session.events_received()[-1].reason == "duplicate_subscription"  # type: ignore[union-attr]


def test_subscription_cap() -> None:
    session = connected(max_subscriptions=2)
    subscribed(session, "a")
    subscribed(session, "b")
    session.receive_data(raw("SUBSCRIBE", ("id", "c"), ("destination", "/d")))
    assert only_error(session).get("message") == "too many subscriptions"


def test_subscription_cap_counts_only_live_subscriptions() -> None:
    session = connected(max_subscriptions=1)
    subscribed(session, "a")
    session.receive_data(raw("UNSUBSCRIBE", ("id", "a")))
    session.events_received()
    subscribed(session, "b")
    assert list(session.subscriptions) == ["b"]


def test_reject_subscription_carries_its_receipt() -> None:
    session = connected()
    session.receive_data(
        raw("SUBSCRIBE", ("id", "0"), ("destination", "/kds/x/y"), ("receipt", "r"))
    )
    session.events_received()
    session.reject("forbidden", "not your venue")
    error = only_error(session)
    assert (error.get("message"), error.get("receipt-id"), error.body) == (
        "forbidden",
        "r",
        b"not your venue",
    )
    assert session.subscriptions == {}


def test_accept_subscription_with_wrong_id_raises() -> None:
    session = connected()
    session.receive_data(raw("SUBSCRIBE", ("id", "0"), ("destination", "/d")))
    with pytest.raises(RuntimeError):
        session.accept_subscription("1")


def test_subscribes_are_decided_one_at_a_time_in_order() -> None:
    session = connected()
    session.receive_data(
        raw("SUBSCRIBE", ("id", "a"), ("destination", "/1"), ("receipt", "ra"))
        + raw("SUBSCRIBE", ("id", "b"), ("destination", "/2"))
        + raw("UNSUBSCRIBE", ("id", "a"), ("receipt", "ru"))
    )
    [first] = session.events_received()
    assert isinstance(first, SubscribeRequested) and first.id == "a"
    session.accept_subscription("a")
    [second] = session.events_received()
    assert isinstance(second, SubscribeRequested) and second.id == "b"
    session.accept_subscription("b")
    [third] = session.events_received()
    assert third == UnsubscribeRequested("a", "/1", "ru")
    receipts = [f.get("receipt-id") for f in sent_frames(session)]
    assert receipts == ["ra", "ru"]
    assert list(session.subscriptions) == ["b"]


def test_unsubscribe_unknown_id_is_harmless_but_receipted() -> None:
    session = connected()
    session.receive_data(raw("UNSUBSCRIBE", ("id", "nope"), ("receipt", "r")))
    assert session.events_received() == []
    assert sent_frames(session) == [Frame("RECEIPT", [("receipt-id", "r")])]
    assert session.close_request is None


def test_unsubscribe_requires_id() -> None:
    session = connected()
    session.receive_data(raw("UNSUBSCRIBE"))
    assert only_error(session).get("message") == "missing id header"


# -- ACK / NACK ---------------------------------------------------------------------------------


def deliver(session: StompSession, sub_id: str, *message_ids: str) -> list[str]:
    acks = []
    for mid in message_ids:
        data = session.message_frame(sub_id, encode_message("/kds/t/v", mid, b"{}"))
        assert data is not None
        [frame] = _parse(data)
        acks.append(frame.get("ack") or "")
    return acks


def _parse(data: bytes) -> list[Frame]:
    parser = FrameParser()
    parser.feed(data)
    return parser.frames()


def test_client_ack_is_cumulative() -> None:
    session = connected()
    subscribed(session, ack="client")
    a1, a2, a3 = deliver(session, "sub-0", "m1", "m2", "m3")
    assert len({a1, a2, a3}) == 3
    assert session.unacked_count("sub-0") == 3
    session.receive_data(raw("ACK", ("id", a2), ("receipt", "r")))
    [event] = session.events_received()
    assert event == AckReceived(a2, None, ("m1", "m2"), "r")
    assert session.unacked_count() == 1
    assert sent_frames(session) == [Frame("RECEIPT", [("receipt-id", "r")])]


def test_client_individual_ack_and_nack() -> None:
    session = connected()
    subscribed(session, ack="client-individual")
    a1, a2, a3 = deliver(session, "sub-0", "m1", "m2", "m3")
    session.receive_data(raw("ACK", ("id", a2), ("subscription", "sub-0")))
    session.receive_data(raw("NACK", ("id", a3)))
    assert session.events_received() == [
        AckReceived(a2, "sub-0", ("m2",), None),
        NackReceived(a3, None, ("m3",), None),
    ]
    assert session.unacked_count("sub-0") == 1
    assert session.subscriptions["sub-0"].unacked == {a1: "m1"}


def test_client_mode_nack_is_cumulative_too() -> None:
    session = connected()
    subscribed(session, ack="client")
    _, a2 = deliver(session, "sub-0", "m1", "m2")
    session.receive_data(raw("NACK", ("id", a2)))
    assert session.events_received() == [NackReceived(a2, None, ("m1", "m2"), None)]


def test_stomp11_ack_by_message_id_and_subscription() -> None:
    session = connected(raw("CONNECT", ("accept-version", "1.1")))
    subscribed(session, ack="client-individual")
    deliver(session, "sub-0", "m1", "m2")
    session.receive_data(raw("ACK", ("message-id", "m2"), ("subscription", "sub-0")))
    [event] = session.events_received()
    assert isinstance(event, AckReceived) and event.message_ids == ("m2",)


def test_ack_on_auto_subscription_or_unknown_id_is_ignored() -> None:
    session = connected()
    subscribed(session)
    session.receive_data(raw("ACK", ("id", "whatever"), ("subscription", "sub-0")))
    assert session.events_received() == [AckReceived("whatever", "sub-0", (), None)]
    assert session.close_request is None


def test_ack_without_id_is_an_error() -> None:
    session = connected()
    session.receive_data(raw("ACK", ("receipt", "r")))
    error = only_error(session)
    assert error.get("message") == "missing id header"
    assert error.get("receipt-id") == "r"


def test_unsubscribe_forgets_unacked_messages() -> None:
    session = connected()
    subscribed(session, ack="client")
    deliver(session, "sub-0", "m1")
    session.receive_data(raw("UNSUBSCRIBE", ("id", "sub-0")))
    assert session.unacked_count() == 0


def test_too_many_unacked_messages() -> None:
    session = connected(max_unacked=2)
    subscribed(session, ack="client")
    deliver(session, "sub-0", "m1", "m2")
    assert session.message_frame("sub-0", encode_message("/d", "m3", b"")) is None
    assert only_error(session).get("message") == "too many unacknowledged messages"


# -- fan-out through the session ----------------------------------------------------------------


def test_message_frame_for_auto_subscription_equals_full_serialize() -> None:
    session = connected()
    subscribed(session, "sub-0")
    message = encode_message("/kds/t/v", "t-1-5", b'{"id":"o1"}', headers=[("seq", "5")])
    data = session.message_frame("sub-0", message)
    assert data == serialize(message.to_frame("sub-0"))
    sub = session.subscriptions["sub-0"]
    assert data == sub.prefix + message.tail
    assert session.message_frame("nope", message) is None


def test_message_frame_with_ack_header_equals_full_serialize() -> None:
    session = connected()
    subscribed(session, "s:1", ack="client")
    message = encode_message("/kds/t/v", "m-1", "{}")
    data = session.message_frame("s:1", message)
    assert data is not None
    [frame] = _parse(data)
    ack = frame.get("ack")
    assert ack is not None
    assert data == serialize(message.to_frame("s:1", ack))
    assert frame.get("subscription") == "s:1"


def test_message_frame_on_stomp10_session_is_not_escaped() -> None:
    session = connected(raw("CONNECT"))
    assert session.version == "1.0"
    session.receive_data(b"SUBSCRIBE\nid:a:b\ndestination:/x:y\n\n\x00")
    session.accept_subscription("a:b")
    message = encode_message("/x:y", "m", b"{}")
    data = session.message_frame("a:b", message)
    assert data is not None
    assert data.startswith(b"MESSAGE\nsubscription:a:b\ndestination:/x:y\n")
    assert data == serialize(message.to_frame("a:b"), escape=False)


def test_no_message_frames_once_closing() -> None:
    session = connected()
    subscribed(session)
    session.fail(1001, "server shutting down")
    assert session.message_frame("sub-0", encode_message("/d", "m", b"")) is None


# -- SEND, transactions, unknown commands, bodies, malformed, oversize --------------------------


def test_client_send_is_an_error() -> None:
    session = connected()
    session.receive_data(raw("SEND", ("destination", "/kds/t/v"), ("receipt", "s1"), body=b"{}"))
    error = only_error(session)
    assert error.get("message") == "SEND is not supported"
    assert error.get("receipt-id") == "s1"
    assert b"/kds/t/v" in error.body
    assert session.events_received()[-1].reason == "send_not_supported"  # type: ignore[union-attr]


@pytest.mark.parametrize("command", ["BEGIN", "COMMIT", "ABORT"])
def test_transactions_are_errors(command: str) -> None:
    session = connected()
    session.receive_data(raw(command, ("transaction", "tx1")))
    assert only_error(session).get("message") == "transactions are not supported"


@pytest.mark.parametrize(
    "command", ["FOO", "MESSAGE", "CONNECTED", "RECEIPT", "ERROR", "subscribe"]
)
def test_unknown_or_server_commands_are_errors(command: str) -> None:
    session = connected()
    session.receive_data(raw(command, ("receipt", "u")))
    error = only_error(session)
    assert error.get("message") == "unknown command"
    assert error.get("receipt-id") == "u"


def test_body_on_a_bodiless_frame_is_an_error() -> None:
    session = connected()
    session.receive_data(raw("SUBSCRIBE", ("id", "0"), ("destination", "/d"), body=b"x"))
    assert only_error(session).get("message") == "SUBSCRIBE frames must not have a body"


def test_malformed_frame_is_an_error() -> None:
    session = connected()
    session.receive_data(b"SUBSCRIBE\nid:0\\t\ndestination:/d\n\n\x00")
    error = only_error(session)
    assert error.get("message") == "malformed frame"
    assert b"escape" in error.body
    assert session.events_received()[-1].reason == "malformed_frame"  # type: ignore[union-attr]


def test_garbage_before_connect_is_an_error() -> None:
    session = StompSession()
    session.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert only_error(session).get("message") == "malformed frame"


def test_oversize_frame_is_an_error() -> None:
    session = connected(max_frame_size=1024)
    session.receive_data(raw("SEND", ("destination", "/d"), ("content-length", "5000")))
    error = only_error(session)
    assert error.get("message") == "frame too large"
    assert b"1024" in error.body
    assert session.close_request == CloseRequest(1009)


def test_oversize_frame_split_across_chunks_is_an_error() -> None:
    session = connected(max_frame_size=1024)
    session.receive_data(b"SEND\ndestination:/d\n\n")
    for _ in range(3):
        session.receive_data(b"x" * 400)
    assert only_error(session).get("message") == "frame too large"


def test_too_many_headers_and_long_lines_are_errors() -> None:
    session = connected(max_headers=4)
    session.receive_data(raw("SUBSCRIBE", *[(f"h{i}", "v") for i in range(5)]))
    assert only_error(session).get("message") == "frame too large"
    session = StompSession(SessionConfig(max_header_line=64))
    session.receive_data(raw("CONNECT", ("login", "x" * 100)))
    assert only_error(session).get("message") == "frame too large"


def test_receive_data_never_raises_on_random_bytes() -> None:
    import random

    rng = random.Random(4)
    for _ in range(200):
        session = connected() if rng.random() < 0.5 else StompSession()
        blob = bytes(rng.choice(b"\x00\n\r:\\ABCSUBRIEcd0123-") for _ in range(rng.randint(1, 80)))
        session.receive_data(blob)
        session.events_received()
        session.data_to_send()


def test_internal_errors_become_error_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    session = connected()

    def boom(frame: Frame) -> None:
        raise KeyError("bug")

    monkeypatch.setitem(session._handlers, "SUBSCRIBE", boom)
    session.receive_data(raw("SUBSCRIBE", ("id", "0"), ("destination", "/d")))
    assert only_error(session).get("message") == "internal server error"
    assert session.close_request == CloseRequest(1011)


# -- DISCONNECT and receipts --------------------------------------------------------------------


def test_disconnect_with_receipt() -> None:
    session = connected()
    subscribed(session)
    session.receive_data(raw("DISCONNECT", ("receipt", "close-2")))
    assert session.events_received() == [DisconnectRequested("close-2")]
    assert sent_frames(session) == [Frame("RECEIPT", [("receipt-id", "close-2")])]
    assert session.close_request == CloseRequest(1000)
    # Clients must not send after DISCONNECT; anything further is ignored.
    session.receive_data(raw("SUBSCRIBE", ("id", "x"), ("destination", "/d")))
    assert session.events_received() == []
    assert session.data_to_send() == []


def test_disconnect_without_receipt() -> None:
    session = connected()
    session.receive_data(raw("DISCONNECT"))
    assert session.events_received() == [DisconnectRequested(None)]
    assert session.data_to_send() == []
    assert session.close_request is not None


def test_receipt_ids_are_escaped_on_the_wire() -> None:
    session = connected()
    session.receive_data(b"DISCONNECT\nreceipt:a\\cb\\nc\n\n\x00")
    data = b"".join(session.data_to_send())
    assert data == b"RECEIPT\nreceipt-id:a\\cb\\nc\n\n\x00"


def test_receipt_ids_on_stomp10_session_are_raw() -> None:
    session = connected(raw("CONNECT"))
    session.receive_data(b"DISCONNECT\nreceipt:a:b\\c\n\n\x00")
    assert b"".join(session.data_to_send()) == b"RECEIPT\nreceipt-id:a:b\\c\n\n\x00"


def test_fail_any_time() -> None:
    session = connected()
    session.fail(1001, "server shutting down", receipt_id="r", headers=[("x-retry-ms", "5000")])
    error = only_error(session)
    assert error.headers == [
        ("message", "server shutting down"),
        ("content-type", "text/plain"),
        ("content-length", "0"),
        ("receipt-id", "r"),
        ("x-retry-ms", "5000"),
    ]
    assert session.close_request == CloseRequest(1001)
    assert session.events_received()[-1] == ErrorSent(ErrorReason.ERROR, "server shutting down", "")
    session.fail(1008, "again")
    assert session.data_to_send() == []  # only one ERROR, ever
    assert session.close_request == CloseRequest(1001)  # and one close


def test_error_after_connected_escapes_headers() -> None:
    session = connected()
    session.fail(1008, "bad: thing\nhere", receipt_id="r:1")
    data = b"".join(session.data_to_send())
    assert data.startswith(b"ERROR\nmessage:bad\\c thing here\n")
    assert b"receipt-id:r\\c1\n" in data


# -- heart-beats and timers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "server", "expected"),
    [
        ((0, 0), (10000, 10000), (0, 0)),
        ((4000, 4000), (10000, 10000), (10000, 10000)),
        ((4000, 4000), (0, 0), (0, 0)),
        ((4000, 0), (10000, 10000), (0, 10000)),
        ((0, 4000), (10000, 10000), (10000, 0)),
        ((20000, 30000), (10000, 10000), (30000, 20000)),
        ((4000, 4000), (1000, 0), (4000, 0)),
        ((4000, 4000), (0, 1000), (0, 4000)),
    ],
)
def test_heartbeat_negotiation_table(
    client: tuple[int, int], server: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert negotiate_heartbeat(client, server) == expected
    session = StompSession(SessionConfig(heart_beat=server))
    session.receive_data(
        raw("CONNECT", ("accept-version", "1.2"), ("heart-beat", f"{client[0]},{client[1]}"))
    )
    session.accept_connect(now=0.0)
    [frame] = sent_frames(session)
    assert frame.get("heart-beat") == f"{server[0]},{server[1]}"
    assert session.heartbeat == expected


def test_no_timers_without_heartbeats() -> None:
    session = connected(raw("CONNECT", ("accept-version", "1.2")))
    assert session.next_deadline() is None
    session.on_timer(1e9)
    assert session.data_to_send() == [] and session.close_request is None


def test_outgoing_heartbeats() -> None:
    session = connected(heart_beat=(5000, 0))  # client 4000,4000 → send every 5 s
    assert session.next_deadline() == 5.0
    session.on_timer(4.9)
    assert session.data_to_send() == []
    session.on_timer(5.0)
    assert session.data_to_send() == [b"\n"]
    assert session.next_deadline() == 10.0
    session.mark_sent(8.0)  # a MESSAGE went out directly
    assert session.next_deadline() == 13.0
    session.on_timer(10.0)
    assert session.data_to_send() == []


def test_client_silence_closes_after_tolerance() -> None:
    session = connected(heart_beat=(0, 4000), heartbeat_tolerance=2.0)
    assert session.heartbeat == (0, 4000)
    assert session.next_deadline() == 8.0
    session.receive_data(b"\n", now=6.0)
    assert session.next_deadline() == 14.0
    session.on_timer(13.9)
    assert session.close_request is None
    session.on_timer(14.0)
    error = only_error(session)
    assert error.get("message") == "heart-beat timeout"
    assert session.events_received()[-1].reason == "heartbeat_timeout"  # type: ignore[union-attr]
    assert session.close_request == CloseRequest(1001)
    assert session.next_deadline() is None


def test_liveness_without_now_is_stamped_at_the_next_timer() -> None:
    session = connected(heart_beat=(0, 4000))
    session.receive_data(b"\n")  # no clock given
    session.on_timer(8.0)  # would have timed out, but data arrived since: restamp
    assert session.close_request is None
    assert session.next_deadline() == 16.0
    session.on_timer(16.0)
    assert session.close_request is not None


def test_any_frame_counts_as_liveness() -> None:
    session = connected(heart_beat=(0, 4000))
    subscribed(session)
    session.receive_data(raw("ACK", ("id", "x")), now=7.0)
    session.on_timer(8.0)
    assert session.close_request is None


def test_connect_timeout() -> None:
    session = StompSession(SessionConfig(connect_timeout=60.0), now=100.0)
    assert session.next_deadline() == 160.0
    session.receive_data(b"\n", now=150.0)
    session.on_timer(159.0)
    assert session.close_request is None
    session.on_timer(160.0)
    assert only_error(session).get("message") == "no CONNECT frame received in time"


def test_no_connect_timeout_without_a_start_time_or_after_connect() -> None:
    assert StompSession().next_deadline() is None
    session = StompSession(now=0.0)
    session.receive_data(STOMPJS_CONNECT)
    assert session.next_deadline() is None  # the adapter is deciding
    session.on_timer(1000.0)
    assert session.close_request is None


def test_expiry_closes_with_error() -> None:
    session = StompSession()
    session.receive_data(raw("CONNECT", ("accept-version", "1.2")))
    session.accept_connect(now=0.0, expires_at=300.0, expiry_message="token expired")
    session.data_to_send()
    assert session.next_deadline() == 300.0
    session.on_timer(299.0)
    assert session.close_request is None
    session.on_timer(300.0)
    assert only_error(session).get("message") == "token expired"
    assert session.events_received()[-1].reason == "expired"  # type: ignore[union-attr]
    assert session.close_request == CloseRequest(1008)


def test_timers_are_ignored_once_closed() -> None:
    session = connected(heart_beat=(1000, 1000))
    session.connection_lost()
    assert session.next_deadline() is None
    session.on_timer(1e6)
    assert session.data_to_send() == []


# -- subprotocol --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["v12.stomp", "v11.stomp", "v10.stomp"], "v12.stomp"),
        (["v10.stomp", "v11.stomp", "v12.stomp"], "v12.stomp"),
        (["v10.stomp, v11.stomp"], "v11.stomp"),
        (["v10.stomp"], "v10.stomp"),
        (["mqtt", "v11.stomp"], "v11.stomp"),
        ([], None),
        (["mqtt"], None),
        (["V12.STOMP"], None),
    ],
)
def test_select_subprotocol(offered: list[str], expected: str | None) -> None:
    assert select_subprotocol(offered) == expected


# -- close codes --------------------------------------------------------------------------------


def test_each_error_reason_names_its_close_code() -> None:
    """The WebSocket close after an ERROR frame (the gateway sends exactly this code)."""
    special = {
        ErrorReason.REJECTED: 1008,
        ErrorReason.EXPIRED: 1008,
        ErrorReason.ERROR: 1008,
        ErrorReason.CONNECT_TIMEOUT: 1008,
        ErrorReason.FRAME_TOO_LARGE: 1009,
        ErrorReason.HEARTBEAT_TIMEOUT: 1001,
        ErrorReason.INTERNAL_ERROR: 1011,
    }
    for reason in ErrorReason:
        assert reason.close_code == special.get(reason, 1002), reason


def test_protocol_errors_close_with_1002() -> None:
    session = connected()
    session.receive_data(raw("SEND", ("destination", "/d")))
    assert session.close_request == CloseRequest(1002)


def test_connection_lost_needs_no_close() -> None:
    session = connected()
    session.connection_lost()
    assert session.close_request is None
    assert session.state is SessionState.CLOSED
    session.receive_data(raw("SUBSCRIBE", ("id", "0"), ("destination", "/d")))
    assert session.events_received() == [] and session.data_to_send() == []
