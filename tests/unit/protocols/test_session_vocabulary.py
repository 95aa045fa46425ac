"""Pusher and STOMP sessions speak one vocabulary (ordercast.protocols.session), driven alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ordercast.protocols.pusher.codes import CloseCode
from ordercast.protocols.pusher.session import PusherSession
from ordercast.protocols.pusher.session import SessionConfig as PusherConfig
from ordercast.protocols.session import CloseRequest, ProtocolSession
from ordercast.protocols.stomp import SessionConfig as StompConfig
from ordercast.protocols.stomp import StompSession

SHARED = ("receive_data", "events_received", "data_to_send", "next_deadline", "on_timer")


def drive(
    session: ProtocolSession[Any, object, str | bytes], data: Any, now: float
) -> tuple[list[object], list[str | bytes], CloseRequest | None]:
    """What an adapter does with any session: feed, drain events and data, ask about closing."""
    session.receive_data(data, now)
    return list(session.events_received()), list(session.data_to_send()), session.close_request


def pusher(now: float = 0.0) -> PusherSession:
    return PusherSession("1.2", PusherConfig(app_key="k", app_secret="s"), now=now)


def stomp(now: float = 0.0) -> StompSession:
    return StompSession(StompConfig(connect_timeout=5.0), now=now)


@pytest.mark.parametrize("make", [pusher, stomp])
def test_same_names_for_the_same_things(make: Any) -> None:
    session = make()
    for name in (*SHARED, "fail"):
        assert callable(getattr(session, name)), name
    assert session.close_request is None
    # The names that had drifted apart are gone.
    for old in ("receive_text", "should_close", "closing", "closed", "close"):
        assert not hasattr(session, old), old
    # send_error stays only where it is not fatal (a pusher:error); a STOMP ERROR always is.
    assert hasattr(session, "send_error") == isinstance(session, PusherSession)


def test_both_ask_for_a_typed_close_when_they_fail() -> None:
    p, s = pusher(), stomp()
    p.data_to_send()  # connection_established
    assert p.close_request is None and s.close_request is None
    p.fail(CloseCode.OVER_CAPACITY, "Over capacity")
    s.fail(1013, "slow consumer")
    assert p.close_request == CloseRequest(4100, "Over capacity")
    assert s.close_request == CloseRequest(1013, "")  # STOMP says why in its ERROR frame
    assert json.loads(p.data_to_send()[0])["event"] == "pusher:error"
    assert s.data_to_send()[0].startswith(b"ERROR\n")


def test_one_adapter_loop_drives_both() -> None:
    events, data, close = drive(pusher(), '{"event":"pusher:ping","data":{}}', 1.0)
    assert events == [] and close is None
    assert [json.loads(d)["event"] for d in data] == [
        "pusher:connection_established",
        "pusher:pong",
    ]
    events, data, close = drive(stomp(), b"SEND\ndestination:/d\n\n\x00", 1.0)
    assert [type(e).__name__ for e in events] == ["ErrorSent"]
    assert isinstance(data[0], bytes) and data[0].startswith(b"ERROR\n")
    assert close == CloseRequest(1002)


def test_timers_are_asked_and_run_alike() -> None:
    for session in (pusher(now=0.0), stomp(now=0.0)):
        deadline = session.next_deadline()
        assert deadline is not None
        session.on_timer(deadline)
        session.data_to_send()
        if isinstance(session, StompSession):  # no CONNECT in time
            assert session.close_request == CloseRequest(1008)
            assert session.next_deadline() is None
        else:  # idle: pinged, and the pong deadline set
            assert session.close_request is None
            later = session.next_deadline()
            assert later is not None and later > deadline
            session.on_timer(later)
            assert session.close_request == CloseRequest(4201, "Pong reply not received")


def test_close_reason_fits_a_close_frame() -> None:
    assert CloseRequest.truncated(4200, "é" * 100).reason == "é" * 61
    assert CloseRequest.truncated(4200, "short") == CloseRequest(4200, "short")
