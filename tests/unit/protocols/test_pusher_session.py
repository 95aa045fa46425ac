"""PusherSession: text in, typed events and text frames out; timers driven by an explicit now."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from ordercast.protocols.pusher.auth import PresenceMember, sign_channel, sign_user
from ordercast.protocols.pusher.codes import CloseCode
from ordercast.protocols.pusher.messages import ChannelKind
from ordercast.protocols.pusher.session import (
    ClientEventReceived,
    CloseRequest,
    PusherSession,
    SessionConfig,
    SignedIn,
    SubscribeRequested,
    UnsubscribeRequested,
)

KEY = "app-key"
SECRET = "app-secret"
SOCKET = "1234.5678"
T0 = 1_000.0


def make(**overrides: Any) -> PusherSession:
    config = SessionConfig(app_key=KEY, app_secret=SECRET, **overrides)
    return PusherSession(SOCKET, config, now=T0)


def frames(session: PusherSession) -> list[dict[str, Any]]:
    """Drain and decode frames; every server frame carries data as a JSON string."""
    out = []
    for text in session.data_to_send():
        message = json.loads(text)
        assert isinstance(message["data"], str)
        message["data"] = json.loads(message["data"])
        out.append(message)
    return out


def send(
    session: PusherSession, event: str, data: Any = None, now: float = T0, **extra: Any
) -> None:
    message: dict[str, Any] = {"event": event, **extra}
    if data is not None:
        message["data"] = data
    session.receive_data(json.dumps(message), now=now)


def subscribe(
    session: PusherSession,
    channel: str,
    *,
    channel_data: str | None = None,
    auth: str | None = None,
) -> None:
    data: dict[str, Any] = {"channel": channel}
    if channel.startswith(("private-", "presence-")) and auth is None:
        auth = sign_channel(KEY, SECRET, SOCKET, channel, channel_data)
    if auth is not None:
        data["auth"] = auth
    if channel_data is not None:
        data["channel_data"] = channel_data
    send(session, "pusher:subscribe", data)


def joined(session: PusherSession, channel: str, **kwargs: Any) -> None:
    """Subscribe and have the adapter accept it; drain everything."""
    subscribe(session, channel, **kwargs)
    (event,) = session.events_received()
    assert isinstance(event, SubscribeRequested)
    members = {event.member.user_id: event.member.user_info} if event.member else None
    assert session.subscription_succeeded(channel, members)
    session.data_to_send()


def error_of(session: PusherSession) -> dict[str, Any]:
    (frame,) = frames(session)
    assert frame["event"] == "pusher:error", frame
    return dict(frame["data"])


# ------------------------------------------------------------------- handshake, ping


def test_start_sends_connection_established() -> None:
    session = make()
    assert frames(session) == [
        {
            "event": "pusher:connection_established",
            "data": {"socket_id": SOCKET, "activity_timeout": 120},
        }
    ]
    assert session.events_received() == []
    assert session.close_request is None


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SessionConfig(app_key=KEY, app_secret=SECRET, activity_timeout=0)
    with pytest.raises(ValueError):
        SessionConfig(app_key=KEY, app_secret=SECRET, client_event_rate=0)


def test_ping_is_answered_with_pong() -> None:
    session = make()
    session.data_to_send()
    send(session, "pusher:ping", {})
    assert frames(session) == [{"event": "pusher:pong", "data": {}}]
    send(session, "pusher:pong", {})
    send(session, "pusher:some_future_event", {})
    assert session.data_to_send() == []


@pytest.mark.parametrize(
    "text", ["", "garbage", "[]", '{"event":"pusher:subscribe"}', "{" * 50_000]
)
def test_receive_data_never_raises(text: str) -> None:
    session = make()
    session.data_to_send()
    session.receive_data(text, now=T0)
    assert error_of(session)["code"] is None
    assert session.close_request is None


def test_oversized_frame_is_refused() -> None:
    session = make(max_message_chars=100)
    session.data_to_send()
    send(session, "pusher:ping", {"pad": "x" * 200})
    assert "too large" in error_of(session)["message"]


# ------------------------------------------------------------------- subscriptions


def test_public_subscription() -> None:
    session = make()
    session.data_to_send()
    subscribe(session, "orders")
    assert session.events_received() == [SubscribeRequested("orders", ChannelKind.PUBLIC)]
    assert session.data_to_send() == []  # nothing until the adapter decides
    assert not session.is_subscribed("orders")
    assert session.subscription_succeeded("orders")
    assert frames(session) == [
        {"event": "pusher_internal:subscription_succeeded", "channel": "orders", "data": {}}
    ]
    assert session.is_subscribed("orders")
    assert session.channels == ["orders"]


def test_private_subscription_with_valid_auth() -> None:
    session = make()
    session.data_to_send()
    subscribe(session, "private-o-1")
    (event,) = session.events_received()
    assert event == SubscribeRequested(
        "private-o-1", ChannelKind.PRIVATE, auth=sign_channel(KEY, SECRET, SOCKET, "private-o-1")
    )
    assert not event.is_cache


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "garbage",
        sign_channel(KEY, SECRET, "9.9", "private-o-1"),  # another socket's signature
        sign_channel(KEY, "wrong", SOCKET, "private-o-1"),
        sign_channel("other-key", SECRET, SOCKET, "private-o-1"),
    ],
)
def test_private_subscription_bad_auth(auth: str | None) -> None:
    session = make()
    session.data_to_send()
    data = {"channel": "private-o-1"}
    if auth is not None:
        data["auth"] = auth
    send(session, "pusher:subscribe", data)
    assert session.events_received() == []
    (frame,) = frames(session)
    assert frame["event"] == "pusher:subscription_error"
    assert frame["channel"] == "private-o-1"
    assert frame["data"]["type"] == "AuthError"
    assert frame["data"]["status"] == 401
    assert session.channels == []


def test_encrypted_channel_needs_auth_like_private() -> None:
    session = make()
    session.data_to_send()
    subscribe(session, "private-encrypted-x")
    (event,) = session.events_received()
    assert isinstance(event, SubscribeRequested)
    assert event.kind is ChannelKind.PRIVATE_ENCRYPTED


def test_presence_subscription() -> None:
    session = make()
    session.data_to_send()
    channel_data = '{"user_id": 10, "user_info": {"name": "Mr. Channels"}}'
    subscribe(session, "presence-r-1", channel_data=channel_data)
    (event,) = session.events_received()
    assert isinstance(event, SubscribeRequested)
    assert event.kind is ChannelKind.PRESENCE
    assert event.channel_data == channel_data
    assert event.member == PresenceMember("10", {"name": "Mr. Channels"})
    with pytest.raises(ValueError):
        session.subscription_succeeded("presence-r-1")
    assert session.subscription_succeeded(
        "presence-r-1", {"10": {"name": "Mr. Channels"}, "11": None}
    )
    (frame,) = frames(session)
    assert frame["data"] == {
        "presence": {
            "ids": ["10", "11"],
            "hash": {"10": {"name": "Mr. Channels"}, "11": None},
            "count": 2,
        }
    }


def test_presence_bad_channel_data() -> None:
    session = make()
    session.data_to_send()
    subscribe(session, "presence-r-1", channel_data='{"user_info": {}}')
    assert session.events_received() == []
    (frame,) = frames(session)
    assert frame["event"] == "pusher:subscription_error"
    assert frame["data"]["status"] == 400
    assert "user_id" in frame["data"]["error"]


def test_presence_channel_data_is_part_of_signature() -> None:
    session = make()
    session.data_to_send()
    auth = sign_channel(KEY, SECRET, SOCKET, "presence-r-1", '{"user_id":"1"}')
    subscribe(session, "presence-r-1", channel_data='{"user_id":"2"}', auth=auth)
    assert session.events_received() == []
    assert frames(session)[0]["data"]["type"] == "AuthError"


def test_invalid_channel_name() -> None:
    session = make()
    session.data_to_send()
    subscribe(session, "bad channel!")
    assert session.events_received() == []
    (frame,) = frames(session)
    assert frame["event"] == "pusher:subscription_error"
    assert frame["data"]["type"] == "InvalidChannel"


def test_duplicate_subscription_is_an_error() -> None:
    session = make()
    session.data_to_send()
    subscribe(session, "orders")
    subscribe(session, "orders")  # while pending
    assert len(session.events_received()) == 1
    assert "Existing subscription" in error_of(session)["message"]
    session.subscription_succeeded("orders")
    session.data_to_send()
    subscribe(session, "orders")  # while active
    assert session.events_received() == []
    assert "Existing subscription to channel orders" in error_of(session)["message"]


def test_subscription_error_command() -> None:
    session = make()
    session.data_to_send()
    subscribe(session, "presence-r-1", channel_data='{"user_id":"1"}')
    session.events_received()
    session.subscription_error("presence-r-1", "LimitReached", "Channel is full", 4100)
    (frame,) = frames(session)
    assert frame == {
        "event": "pusher:subscription_error",
        "channel": "presence-r-1",
        "data": {"type": "LimitReached", "error": "Channel is full", "status": 4100},
    }
    assert session.channels == []
    assert not session.subscription_succeeded("presence-r-1", {})
    # The channel may be tried again.
    subscribe(session, "presence-r-1", channel_data='{"user_id":"1"}')
    assert len(session.events_received()) == 1


def test_commands_on_unknown_channels_are_noops() -> None:
    session = make()
    session.data_to_send()
    assert not session.subscription_succeeded("nope")
    session.subscription_error("nope", "AuthError", "x", 401)
    session.cache_miss("nope")
    assert session.data_to_send() == []


def test_unsubscribe() -> None:
    session = make()
    session.data_to_send()
    joined(session, "presence-r-1", channel_data='{"user_id":"u"}')
    send(session, "pusher:unsubscribe", {"channel": "presence-r-1"})
    assert session.events_received() == [
        UnsubscribeRequested("presence-r-1", True, PresenceMember("u"))
    ]
    assert not session.is_subscribed("presence-r-1")
    send(session, "pusher:unsubscribe", {"channel": "presence-r-1"})  # idempotent
    send(session, "pusher:unsubscribe", {"channel": "never"})
    assert session.events_received() == []
    assert session.data_to_send() == []


def test_unsubscribe_while_pending_cancels_the_success() -> None:
    session = make()
    session.data_to_send()
    subscribe(session, "orders")
    send(session, "pusher:unsubscribe", {"channel": "orders"})
    events = session.events_received()
    assert events[-1] == UnsubscribeRequested("orders", False, None)
    assert session.subscription_succeeded("orders") is False
    assert session.data_to_send() == []
    # sub-unsub-sub = sub
    subscribe(session, "orders")
    assert session.subscription_succeeded("orders") is True


def test_cache_channel_miss() -> None:
    session = make()
    session.data_to_send()
    subscribe(session, "cache-menu")
    (event,) = session.events_received()
    assert isinstance(event, SubscribeRequested) and event.is_cache
    session.subscription_succeeded("cache-menu")
    session.cache_miss("cache-menu")
    assert [f["event"] for f in frames(session)] == [
        "pusher_internal:subscription_succeeded",
        "pusher:cache_miss",
    ]


# ------------------------------------------------------------------- sign-in


def signin(session: PusherSession, user_data: str, auth: str | None = None) -> None:
    send(
        session,
        "pusher:signin",
        {"auth": auth or sign_user(KEY, SECRET, SOCKET, user_data), "user_data": user_data},
    )


def test_signin_success_and_server_to_user_channel() -> None:
    session = make()
    session.data_to_send()
    subscribe(session, "#server-to-user-u1")  # not signed in yet
    assert session.events_received() == []
    assert frames(session)[0]["data"]["status"] == 403

    user_data = '{"id": "u1", "user_info": {"name": "Ana"}}'
    signin(session, user_data)
    (frame,) = frames(session)
    assert frame == {"event": "pusher:signin_success", "data": {"user_data": user_data}}
    (event,) = session.events_received()
    assert isinstance(event, SignedIn)
    assert event.user.id == "u1" and event.user.user_info == {"name": "Ana"}
    assert session.user == event.user

    subscribe(session, "#server-to-user-u1")
    assert session.events_received() == [
        SubscribeRequested("#server-to-user-u1", ChannelKind.SERVER_TO_USER)
    ]
    subscribe(session, "#server-to-user-u2")  # someone else's
    assert session.events_received() == []
    assert frames(session)[0]["data"]["type"] == "AuthError"


def test_second_signin_is_refused() -> None:
    session = make()
    session.data_to_send()
    signin(session, '{"id":"u1"}')
    session.data_to_send()
    session.events_received()
    signin(session, '{"id":"u2"}')
    assert "Already signed in" in error_of(session)["message"]
    assert session.user is not None and session.user.id == "u1"


@pytest.mark.parametrize(
    ("user_data", "auth"),
    [
        ('{"id":"u1"}', "app-key:" + "0" * 64),
        ('{"id":5}', None),  # signed but invalid: id must be a string
    ],
)
def test_failed_signin_closes_with_4009(user_data: str, auth: str | None) -> None:
    session = make()
    session.data_to_send()
    signin(session, user_data, auth)
    assert session.events_received() == []
    error = error_of(session)
    assert error["code"] == 4009
    assert session.close_request is not None
    assert session.close_request.code == CloseCode.UNAUTHORIZED
    assert session.user is None


# ------------------------------------------------------------------- client events


def test_client_event_on_private_channel() -> None:
    session = make(client_events=True)
    session.data_to_send()
    joined(session, "private-o-1")
    send(session, "client-typing", {"who": "ana"}, channel="private-o-1")
    assert session.events_received() == [
        ClientEventReceived("client-typing", "private-o-1", '{"who":"ana"}', None)
    ]
    assert session.data_to_send() == []  # never echoed to the sender


def test_client_event_on_presence_channel_carries_user_id() -> None:
    session = make(client_events=True)
    session.data_to_send()
    joined(session, "presence-r-1", channel_data='{"user_id":"staff-7"}')
    send(session, "client-ping", "raw", channel="presence-r-1")
    assert session.events_received() == [
        ClientEventReceived("client-ping", "presence-r-1", "raw", "staff-7")
    ]


@pytest.mark.parametrize(
    ("event", "channel", "setup", "message"),
    [
        ("typing", "private-o-1", "private-o-1", "must start with 'client-'"),
        ("client-x", None, "private-o-1", "need a channel"),
        ("client-x", "private-o-2", "private-o-1", "Not subscribed"),
        ("client-x", "orders", "orders", "private and presence"),
        ("client-x", "private-encrypted-x", "private-encrypted-x", "private and presence"),
        ("client-" + "x" * 200, "private-o-1", "private-o-1", "too long"),
    ],
)
def test_client_event_rejections(event: str, channel: str | None, setup: str, message: str) -> None:
    session = make(client_events=True)
    session.data_to_send()
    joined(session, setup)
    extra: dict[str, Any] = {} if channel is None else {"channel": channel}
    send(session, event, {}, **extra)
    assert session.events_received() == []
    error = error_of(session)
    assert message in error["message"]
    assert error["code"] is None
    assert session.close_request is None


def test_client_event_on_pending_channel_is_rejected() -> None:
    session = make(client_events=True)
    session.data_to_send()
    subscribe(session, "private-o-1")
    session.events_received()
    send(session, "client-x", {}, channel="private-o-1")
    assert session.events_received() == []
    assert "Not subscribed" in error_of(session)["message"]


def test_client_events_disabled_by_default() -> None:
    session = make()
    session.data_to_send()
    joined(session, "private-o-1")
    send(session, "client-x", {}, channel="private-o-1")
    assert session.events_received() == []
    assert "not enabled" in error_of(session)["message"]


def test_client_event_data_limit() -> None:
    session = make(client_events=True, max_data_bytes=20)
    session.data_to_send()
    joined(session, "private-o-1")
    send(session, "client-x", "x" * 20, channel="private-o-1")
    assert len(session.events_received()) == 1
    send(session, "client-x", "é" * 11, channel="private-o-1")
    assert session.events_received() == []
    assert "too large" in error_of(session)["message"]


def test_client_event_rate_limit_10_per_second() -> None:
    session = make(client_events=True)
    session.data_to_send()
    joined(session, "private-o-1")
    for _ in range(10):
        send(session, "client-x", {}, channel="private-o-1", now=T0)
    assert len(session.events_received()) == 10
    send(session, "client-x", {}, channel="private-o-1", now=T0)
    assert session.events_received() == []
    error = error_of(session)
    assert error["code"] == 4301
    assert "rate limit" in error["message"]
    assert session.close_request is None
    send(session, "client-x", {}, channel="private-o-1", now=T0 + 0.1)  # one token back
    assert len(session.events_received()) == 1
    send(session, "client-x", {}, channel="private-o-1", now=T0 + 0.1)
    assert session.events_received() == []
    session.data_to_send()
    for i in range(10):
        send(session, "client-x", {}, channel="private-o-1", now=T0 + 5 + i * 0.1)
    assert len(session.events_received()) == 10


def test_client_event_rate_is_configurable() -> None:
    session = make(client_events=True, client_event_rate=2)
    session.data_to_send()
    joined(session, "private-o-1")
    for _ in range(3):
        send(session, "client-x", {}, channel="private-o-1")
    assert len(session.events_received()) == 2


# ------------------------------------------------------------------- activity timeout


def test_idle_connection_gets_pinged_then_closed_with_4201() -> None:
    session = make(activity_timeout=120, pong_timeout=30)
    session.data_to_send()
    assert session.next_deadline() == T0 + 120
    session.on_timer(T0 + 119)
    assert session.data_to_send() == []
    session.on_timer(T0 + 120)
    assert frames(session) == [{"event": "pusher:ping", "data": {}}]
    assert session.next_deadline() == T0 + 150
    session.on_timer(T0 + 149)
    assert session.data_to_send() == []
    session.on_timer(T0 + 150)
    assert error_of(session)["code"] == 4201
    assert session.close_request == CloseRequest(4201, "Pong reply not received")
    assert session.next_deadline() is None


def test_any_message_counts_as_activity_and_answers_the_ping() -> None:
    session = make(activity_timeout=120, pong_timeout=30)
    session.data_to_send()
    send(session, "pusher:ping", {}, now=T0 + 60)
    assert session.next_deadline() == T0 + 180
    session.on_timer(T0 + 180)
    session.data_to_send()
    send(session, "pusher:pong", {}, now=T0 + 185)
    assert session.next_deadline() == T0 + 305
    session.on_timer(T0 + 211)
    assert session.close_request is None


def test_control_frame_activity() -> None:
    session = make()
    session.on_timer(T0 + 120)
    session.note_activity(T0 + 125)  # RFC 6455 pong
    assert session.next_deadline() == T0 + 245
    session.on_timer(T0 + 200)
    assert session.close_request is None


def test_user_auth_timeout_closes_unauthorized_connections() -> None:
    session = make(user_auth_timeout=30)
    session.data_to_send()
    assert session.next_deadline() == T0 + 30
    joined(session, "orders")  # public does not count
    session.on_timer(T0 + 30)
    assert error_of(session)["code"] == 4009
    assert session.close_request is not None and session.close_request.code == 4009


@pytest.mark.parametrize("how", ["signin", "private"])
def test_user_auth_timeout_cleared(how: str) -> None:
    session = make(user_auth_timeout=30)
    session.data_to_send()
    if how == "signin":
        signin(session, '{"id":"u"}')
        session.events_received()
    else:
        joined(session, "private-o-1")
    assert session.next_deadline() == T0 + 120
    session.on_timer(T0 + 31)
    session.data_to_send()
    assert session.close_request is None


# ------------------------------------------------------------------- close


def test_fail_sends_error_then_requests_close_and_ignores_the_rest() -> None:
    session = make()
    session.data_to_send()
    joined(session, "orders")
    session.fail(CloseCode.OVER_CAPACITY, "Over capacity")
    assert error_of(session) == {"message": "Over capacity", "code": 4100}
    assert session.close_request == CloseRequest(4100, "Over capacity")
    send(session, "pusher:ping", {})
    session.send_error("late")
    session.fail(4200, "again")
    session.on_timer(T0 + 10_000)
    assert session.data_to_send() == []
    assert session.close_request == CloseRequest(4100, "Over capacity")
    assert session.channels == ["orders"]  # the adapter cleans these up


def test_close_reason_is_truncated_to_123_bytes() -> None:
    session = make()
    session.fail(4200, "é" * 100)
    assert session.close_request is not None
    assert len(session.close_request.reason.encode()) <= 123


def test_send_error_is_not_fatal() -> None:
    session = make()
    session.data_to_send()
    session.send_error("Presence channel is full", 4100)
    assert error_of(session) == {"message": "Presence channel is full", "code": 4100}
    assert session.close_request is None


# ------------------------------------------------------------------- robustness


def _maybe(sign: Any, *args: Any) -> str | None:
    """A valid signature when the inputs are signable strings, else None."""
    if not all(isinstance(a, str) for a in args):
        return None
    try:
        return str(sign(KEY, SECRET, SOCKET, *args))
    except UnicodeEncodeError:
        return None


def test_fuzzed_frames_never_raise_and_output_is_valid_utf8_json() -> None:
    rnd = random.Random(20240601)
    surrogate = "\ud800"
    atoms: list[Any] = [
        None, 0, 1.5, True, "", "x", surrogate, [], {}, {"a": surrogate}, "private-o-1",
        "presence-r-1", "#server-to-user-u", "client-x", "a" * 300, "cache-a", "private-o-1",
        "presence-r-1", "{\"x\": 1}",
        '{"user_id":"u","user_info":{"n":"\\ud800"}}', '{"user_id":"u"}', '{"id":"u"}',
        '{"id":"u","user_info":"\\udfff"}',
    ]  # fmt: skip
    events = ["pusher:subscribe", "pusher:signin", "pusher:unsubscribe", "client-x",
              "pusher:ping", "pusher:pong", *atoms]  # fmt: skip
    config = SessionConfig(app_key=KEY, app_secret=SECRET, client_events=True)
    for _ in range(3000):
        session = PusherSession(SOCKET, config, now=T0)
        for step in range(6):
            channel, channel_data, user_data = (rnd.choice(atoms) for _ in range(3))
            if rnd.random() < 0.6:
                channel = rnd.choice(["private-o-1", "presence-r-1", "#server-to-user-u"])
                channel_data = rnd.choice([channel_data, '{"user_id":"u"}'])
                user_data = rnd.choice([user_data, '{"id":"u"}'])
            presence = isinstance(channel, str) and channel.startswith("presence-")
            channel_auth = (
                _maybe(sign_channel, channel, channel_data)
                if presence
                else _maybe(sign_channel, channel)
            )
            subscribe_data = {
                "channel": channel,
                "auth": rnd.choice([channel_auth, rnd.choice(atoms)]),
                "channel_data": channel_data,
            }
            signin_data = {"auth": _maybe(sign_user, user_data), "user_data": user_data}
            name = rnd.choice([*events, "client-x", "pusher:subscribe", "pusher:signin"])
            data = rnd.choice(atoms)
            if rnd.random() < 0.8 and name in ("pusher:subscribe", "pusher:unsubscribe"):
                data = subscribe_data
            elif rnd.random() < 0.8 and name == "pusher:signin":
                data = signin_data
            message: dict[str, Any] = {"event": name, "data": data}
            if rnd.random() < 0.7:
                message["channel"] = channel
            session.receive_data(json.dumps(message), now=T0 + step)
            for event in session.events_received():
                if isinstance(event, SubscribeRequested):
                    member = event.member
                    members = {member.user_id: member.user_info} if member else None
                    session.subscription_succeeded(event.channel, members)
            for text in session.data_to_send():
                text.encode()  # must be sendable as a UTF-8 text frame
                assert isinstance(json.loads(text)["data"], str)
