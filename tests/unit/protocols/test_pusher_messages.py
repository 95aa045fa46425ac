"""Pusher wire messages: channel names, client-frame parsing, server-frame encoding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ordercast.errors import ProtocolError, ValidationError
from ordercast.protocols.pusher import messages as m
from ordercast.protocols.pusher.messages import ChannelKind


def decode(frame: str) -> dict[str, Any]:
    """Decode a server frame, asserting the double-encoding rule (data is a JSON string)."""
    message = json.loads(frame)
    assert isinstance(message, dict)
    assert isinstance(message["data"], str), "server data must be a JSON-encoded string"
    return message


def inner(frame: str) -> Any:
    return json.loads(decode(frame)["data"])


# ------------------------------------------------------------------- channel names


@pytest.mark.parametrize(
    ("channel", "kind"),
    [
        ("orders", ChannelKind.PUBLIC),
        ("cache-orders", ChannelKind.PUBLIC),
        ("private-o-52a7289e96ba1c6209000003", ChannelKind.PRIVATE),
        ("private-cache-x", ChannelKind.PRIVATE),
        ("private-encrypted-x", ChannelKind.PRIVATE_ENCRYPTED),
        ("private-encrypted-cache-x", ChannelKind.PRIVATE_ENCRYPTED),
        ("presence-r-1", ChannelKind.PRESENCE),
        ("presence-cache-r-1", ChannelKind.PRESENCE),
        ("#server-to-user-42", ChannelKind.SERVER_TO_USER),
        ("privatefoo", ChannelKind.PUBLIC),
    ],
)
def test_channel_kind(channel: str, kind: ChannelKind) -> None:
    assert m.validate_channel_name(channel) == channel
    assert m.channel_kind(channel) is kind


def test_kind_properties() -> None:
    assert ChannelKind.PRIVATE.needs_auth and ChannelKind.PRESENCE.needs_auth
    assert ChannelKind.PRIVATE_ENCRYPTED.needs_auth
    assert not ChannelKind.PUBLIC.needs_auth and not ChannelKind.SERVER_TO_USER.needs_auth
    assert ChannelKind.PRIVATE.allows_client_events and ChannelKind.PRESENCE.allows_client_events
    assert not ChannelKind.PRIVATE_ENCRYPTED.allows_client_events
    assert not ChannelKind.PUBLIC.allows_client_events


@pytest.mark.parametrize(
    ("channel", "cache"),
    [
        ("cache-a", True),
        ("private-cache-a", True),
        ("private-encrypted-cache-a", True),
        ("presence-cache-a", True),
        ("private-a", False),
        ("cachea", False),
    ],
)
def test_is_cache_channel(channel: str, cache: bool) -> None:
    assert m.is_cache_channel(channel) is cache


def test_channel_name_allowed_characters_and_length() -> None:
    m.validate_channel_name("A-z_0=9@,.;")
    m.validate_channel_name("x" * 200)
    with pytest.raises(ValidationError, match="limit is 200"):
        m.validate_channel_name("x" * 201)


@pytest.mark.parametrize(
    "channel",
    [
        "",
        "a b",
        "a/b",
        "a:b",
        "é",
        "#foo",
        "#server-to-user-",
        "#server-to-user-a b",
        "a#b",
        5,
        None,
    ],
)
def test_invalid_channel_names(channel: object) -> None:
    with pytest.raises(ValidationError):
        m.validate_channel_name(channel)


def test_event_name_validation() -> None:
    assert m.validate_event_name("order_tracker") == "order_tracker"
    with pytest.raises(ValidationError):
        m.validate_event_name("")
    with pytest.raises(ValidationError, match="limit is 200"):
        m.validate_event_name("e" * 201)


# ------------------------------------------------------------------- parsing client frames


def test_parse_ping_pong() -> None:
    assert m.parse_client_message('{"event":"pusher:ping","data":{}}') == m.Ping()
    assert m.parse_client_message('{"event":"pusher:ping","data":""}') == m.Ping()  # pysher
    assert m.parse_client_message('{"event":"pusher:pong"}') == m.Pong()


def test_parse_subscribe_object_and_string_data() -> None:
    as_object = json.dumps(
        {
            "event": "pusher:subscribe",
            "data": {"channel": "presence-r-1", "auth": "k:s", "channel_data": '{"user_id":1}'},
        }
    )
    as_string = json.dumps(
        {
            "event": "pusher:subscribe",
            "data": json.dumps(
                {"channel": "presence-r-1", "auth": "k:s", "channel_data": '{"user_id":1}'}
            ),
        }
    )
    expected = m.Subscribe("presence-r-1", "k:s", '{"user_id":1}')
    assert m.parse_client_message(as_object) == expected
    assert m.parse_client_message(as_string) == expected
    assert m.parse_client_message(
        '{"event":"pusher:subscribe","data":{"channel":"orders"}}'
    ) == m.Subscribe("orders")


def test_parse_unsubscribe_and_signin() -> None:
    assert m.parse_client_message(
        '{"event":"pusher:unsubscribe","data":{"channel":"a"}}'
    ) == m.Unsubscribe("a")
    assert m.parse_client_message(
        '{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\\"id\\":\\"1\\"}"}}'
    ) == m.Signin("k:s", '{"id":"1"}')


def test_parse_client_event_keeps_string_and_compacts_object() -> None:
    obj = m.parse_client_message(
        '{"event":"client-typing","channel":"private-a","data":{"who": "ana", "n": [1, 2]}}'
    )
    assert obj == m.ClientEvent("client-typing", "private-a", '{"who":"ana","n":[1,2]}')
    text = m.parse_client_message('{"event":"client-x","channel":"private-a","data":"raw text"}')
    assert text == m.ClientEvent("client-x", "private-a", "raw text")
    missing = m.parse_client_message('{"event":"client-x"}')
    assert missing == m.ClientEvent("client-x", None, "null")


def test_parse_unknown_pusher_event() -> None:
    assert m.parse_client_message('{"event":"pusher:whatever"}') == m.UnknownEvent(
        "pusher:whatever"
    )
    assert m.parse_client_message('{"event":"pusher_internal:x"}') == m.UnknownEvent(
        "pusher_internal:x"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '"str"',
        "{}",
        '{"event":""}',
        '{"event":5}',
        '{"event":"pusher:subscribe"}',
        '{"event":"pusher:subscribe","data":"not json"}',
        '{"event":"pusher:subscribe","data":[1]}',
        '{"event":"pusher:subscribe","data":{}}',
        '{"event":"pusher:subscribe","data":{"channel":""}}',
        '{"event":"pusher:subscribe","data":{"channel":"a","auth":5}}',
        '{"event":"pusher:subscribe","data":{"channel":"a","channel_data":{"user_id":1}}}',
        '{"event":"pusher:unsubscribe","data":{"channel":7}}',
        '{"event":"pusher:signin","data":{"auth":"k:s"}}',
        '{"event":"client-x","channel":7,"data":{}}',
        "[" * 100_000,
        '{"event":"client-x","channel":"private-a","data":{"n":NaN}}',
        '{"event":"client-x","channel":"private-a","data":"\\ud800"}',
        '{"event":"client-x","channel":"private-a","data":{"a":"\\udfff"}}',
        '{"event":"client-\\ud800","channel":"private-a","data":{}}',
        '{"event":"client-x","channel":"private-\\ud800","data":{}}',
        '{"event":"pusher:subscribe","data":{"channel":"a","auth":"k:\\ud800"}}',
        '{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\\"id\\":\\"\\ud800\\"}"}}',
        '{"event":"pusher:signin","data":{"auth":"k:s","user_data":"\\ud800"}}',
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ProtocolError):
        m.parse_client_message(text)


# ------------------------------------------------------------------- encoding server frames


def test_connection_established() -> None:
    frame = m.encode_connection_established("123.456", 120)
    assert decode(frame)["event"] == "pusher:connection_established"
    assert inner(frame) == {"socket_id": "123.456", "activity_timeout": 120}
    with pytest.raises(ValueError):
        m.encode_connection_established("1.1", 0)


def test_ping_pong_error() -> None:
    assert decode(m.encode_pong())["event"] == "pusher:pong"
    assert decode(m.encode_ping())["event"] == "pusher:ping"
    error = m.encode_error("Over capacity", 4100)
    assert decode(error)["event"] == "pusher:error"
    assert inner(error) == {"message": "Over capacity", "code": 4100}
    assert inner(m.encode_error("meh")) == {"message": "meh", "code": None}


def test_subscription_succeeded_plain_and_presence() -> None:
    plain = m.encode_subscription_succeeded("private-a")
    assert decode(plain) == {
        "event": "pusher_internal:subscription_succeeded",
        "channel": "private-a",
        "data": "{}",
    }
    members = {"1": {"name": "A"}, "2": None}
    presence = m.encode_subscription_succeeded("presence-a", members)
    assert inner(presence) == {
        "presence": {"ids": ["1", "2"], "hash": {"1": {"name": "A"}, "2": None}, "count": 2}
    }
    empty = m.encode_subscription_succeeded("presence-a", {})
    assert inner(empty) == {"presence": {"ids": [], "hash": {}, "count": 0}}


def test_subscription_error() -> None:
    frame = m.encode_subscription_error("private-a", "AuthError", "bad", 401)
    assert decode(frame)["event"] == "pusher:subscription_error"
    assert decode(frame)["channel"] == "private-a"
    assert inner(frame) == {"type": "AuthError", "error": "bad", "status": 401}


def test_member_events() -> None:
    added = m.encode_member_added("presence-a", "7", {"name": "Ana"})
    assert decode(added)["event"] == "pusher_internal:member_added"
    assert inner(added) == {"user_id": "7", "user_info": {"name": "Ana"}}
    assert inner(m.encode_member_added("presence-a", "7")) == {"user_id": "7"}
    removed = m.encode_member_removed("presence-a", "7")
    assert decode(removed)["event"] == "pusher_internal:member_removed"
    assert inner(removed) == {"user_id": "7"}


def test_signin_success_cache_miss_subscription_count() -> None:
    signin = m.encode_signin_success('{"id":"1"}')
    assert inner(signin) == {"user_data": '{"id":"1"}'}
    miss = m.encode_cache_miss("cache-a")
    assert decode(miss) == {"event": "pusher:cache_miss", "channel": "cache-a", "data": "{}"}
    count = m.encode_subscription_count("a", 3)
    assert decode(count)["event"] == "pusher_internal:subscription_count"
    assert inner(count) == {"subscription_count": 3}


def test_encode_event_passes_data_verbatim() -> None:
    data = '{"confirmation":1,"reason":"Ünïcode \\"quoted\\""}'
    frame = m.encode_event("order_confirmation", "private-o-1", data)
    assert json.loads(frame) == {
        "event": "order_confirmation",
        "channel": "private-o-1",
        "data": data,
    }
    with_user = json.loads(m.encode_event("client-x", "presence-a", "hi", user_id="9"))
    assert with_user == {"event": "client-x", "channel": "presence-a", "data": "hi", "user_id": "9"}
    assert json.loads(m.encode_event("e", None, "{}")) == {"event": "e", "data": "{}"}


def test_encode_event_is_compact_and_escapes_control_characters() -> None:
    frame = m.encode_event("e", "c", "line\nbreak\u2028")
    assert "\n" not in frame
    assert json.loads(frame)["data"] == "line\nbreak\u2028"
