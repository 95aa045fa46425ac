"""Pusher signatures: doc vectors, independent HMAC computations, SDK interop, data validation."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from ordercast.errors import Unauthorized, ValidationError
from ordercast.protocols.pusher.auth import (
    PresenceMember,
    channel_string_to_sign,
    hmac_sha256_hex,
    parse_presence_channel_data,
    parse_user_data,
    sign_channel,
    sign_user,
    user_string_to_sign,
    validate_socket_id,
    verify_channel_auth,
    verify_user_auth,
    webhook_signature,
)

# The example credentials of Pusher's auth-signature documentation.
KEY = "278d425bdf160c739803"
SECRET = "7ad3773142a6692b25b8"
SOCKET = "1234.1234"


def reference_hmac(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_private_channel_doc_vector() -> None:
    expected = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
    assert sign_channel(KEY, SECRET, SOCKET, "private-foobar") == f"{KEY}:{expected}"
    assert reference_hmac(SECRET, "1234.1234:private-foobar") == expected


def test_presence_channel_doc_vector() -> None:
    channel_data = '{"user_id":10,"user_info":{"name":"Mr. Channels"}}'
    expected = "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
    assert sign_channel(KEY, SECRET, SOCKET, "presence-foobar", channel_data) == f"{KEY}:{expected}"
    verify_channel_auth(
        app_key=KEY,
        secret=SECRET,
        socket_id=SOCKET,
        channel="presence-foobar",
        auth=f"{KEY}:{expected}",
        channel_data=channel_data,
    )


def test_strings_to_sign() -> None:
    assert channel_string_to_sign("1.2", "private-a") == "1.2:private-a"
    assert channel_string_to_sign("1.2", "presence-a", '{"user_id":"u"}') == (
        '1.2:presence-a:{"user_id":"u"}'
    )
    assert user_string_to_sign("1.2", '{"id":"u"}') == '1.2::user::{"id":"u"}'


def test_hmac_accepts_bytes_and_str() -> None:
    assert hmac_sha256_hex("s", "abc") == hmac_sha256_hex("s", b"abc") == reference_hmac("s", "abc")


def test_sign_user_matches_independent_hmac() -> None:
    user_data = '{"id":"42","user_info":{"name":"Ana"}}'
    expected = reference_hmac(SECRET, f"{SOCKET}::user::{user_data}")
    assert sign_user(KEY, SECRET, SOCKET, user_data) == f"{KEY}:{expected}"
    verify_user_auth(
        app_key=KEY, secret=SECRET, socket_id=SOCKET, auth=f"{KEY}:{expected}", user_data=user_data
    )


def test_webhook_signature() -> None:
    body = b'{"time_ms":1,"events":[]}'
    assert webhook_signature(SECRET, body) == reference_hmac(SECRET, body.decode())


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (None, "missing"),
        ("", "missing"),
        ("no-colon", "form"),
        (f"{KEY}:", "form"),
        ("otherkey:" + "0" * 64, "different app key"),
        (f"{KEY}:" + "0" * 64, "Invalid signature"),
    ],
)
def test_verify_channel_auth_rejects(auth: str | None, message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        verify_channel_auth(
            app_key=KEY, secret=SECRET, socket_id=SOCKET, channel="private-foobar", auth=auth
        )


def test_signature_is_bound_to_socket_channel_and_exact_channel_data() -> None:
    auth = sign_channel(KEY, SECRET, SOCKET, "private-a")
    with pytest.raises(Unauthorized):
        verify_channel_auth(
            app_key=KEY, secret=SECRET, socket_id="1.1", channel="private-a", auth=auth
        )
    with pytest.raises(Unauthorized):
        verify_channel_auth(
            app_key=KEY, secret=SECRET, socket_id=SOCKET, channel="private-b", auth=auth
        )
    # The Python SDK's spacing differs from Node's: we must verify the bytes we got.
    spaced = '{"user_id": "1"}'
    auth = sign_channel(KEY, SECRET, SOCKET, "presence-a", spaced)
    verify_channel_auth(
        app_key=KEY,
        secret=SECRET,
        socket_id=SOCKET,
        channel="presence-a",
        auth=auth,
        channel_data=spaced,
    )
    with pytest.raises(Unauthorized):
        verify_channel_auth(
            app_key=KEY,
            secret=SECRET,
            socket_id=SOCKET,
            channel="presence-a",
            auth=auth,
            channel_data='{"user_id":"1"}',
        )


def test_uppercase_hex_is_accepted() -> None:
    key, sig = sign_channel(KEY, SECRET, SOCKET, "private-a").split(":")
    verify_channel_auth(
        app_key=KEY,
        secret=SECRET,
        socket_id=SOCKET,
        channel="private-a",
        auth=f"{key}:{sig.upper()}",
    )


def test_user_auth_rejects_tampered_user_data() -> None:
    auth = sign_user(KEY, SECRET, SOCKET, '{"id":"1"}')
    with pytest.raises(Unauthorized):
        verify_user_auth(
            app_key=KEY, secret=SECRET, socket_id=SOCKET, auth=auth, user_data='{"id":"2"}'
        )


# ------------------------------------------------------------------- interop with the Python SDK


def test_python_sdk_channel_auth_verifies() -> None:
    pusher = pytest.importorskip("pusher")
    client = pusher.Pusher(app_id="1", key=KEY, secret=SECRET)
    private = client.authenticate(channel="private-o-1", socket_id=SOCKET)
    verify_channel_auth(
        app_key=KEY, secret=SECRET, socket_id=SOCKET, channel="private-o-1", auth=private["auth"]
    )
    presence = client.authenticate(
        channel="presence-r-1",
        socket_id=SOCKET,
        custom_data={"user_id": "7", "user_info": {"name": "Zoë"}},
    )
    verify_channel_auth(
        app_key=KEY,
        secret=SECRET,
        socket_id=SOCKET,
        channel="presence-r-1",
        auth=presence["auth"],
        channel_data=presence["channel_data"],
    )
    assert parse_presence_channel_data(presence["channel_data"]) == PresenceMember(
        "7", {"name": "Zoë"}
    )


def test_python_sdk_user_auth_verifies() -> None:
    pusher = pytest.importorskip("pusher")
    client = pusher.Pusher(app_id="1", key=KEY, secret=SECRET)
    response = client.authenticate_user(socket_id=SOCKET, user_data={"id": "u1"})
    verify_user_auth(
        app_key=KEY,
        secret=SECRET,
        socket_id=SOCKET,
        auth=response["auth"],
        user_data=response["user_data"],
    )
    assert parse_user_data(response["user_data"]).id == "u1"


# ------------------------------------------------------------------- socket ids


@pytest.mark.parametrize("socket_id", ["1.1", "123.456", "0.0", "98765432109876.1234567890"])
def test_valid_socket_ids(socket_id: str) -> None:
    assert validate_socket_id(socket_id) == socket_id


@pytest.mark.parametrize(
    "socket_id",
    ["", "1", "1.", ".1", "a.b", "1.1.1", "1.1\n", " 1.1", "1:1", "\u0661.\u0661", 11, None],
)
def test_invalid_socket_ids(socket_id: object) -> None:
    with pytest.raises(ValidationError, match="socket_id"):
        validate_socket_id(socket_id)


# ------------------------------------------------------------------- presence channel_data


def test_presence_channel_data_numeric_user_id_becomes_string() -> None:
    member = parse_presence_channel_data('{"user_id":10,"user_info":{"name":"Mr. Channels"}}')
    assert member == PresenceMember("10", {"name": "Mr. Channels"})


def test_presence_channel_data_without_user_info() -> None:
    assert parse_presence_channel_data('{"user_id":"a"}') == PresenceMember("a", None)


@pytest.mark.parametrize(
    ("channel_data", "message"),
    [
        (None, "need channel_data"),
        ('{"user_id":"a","user_info":{"n":"\\ud800"}}', "not valid JSON"),
        ('{"user_id":"a","user_info":NaN}', "not valid JSON"),
        ("not json", "not valid JSON"),
        ("[1]", "JSON object"),
        ("{}", "user_id is required"),
        ('{"user_id":""}', "must not be empty"),
        ('{"user_id":true}', "string or an integer"),
        ('{"user_id":1.5}', "string or an integer"),
        ('{"user_id":null}', "string or an integer"),
        (json.dumps({"user_id": "x" * 129}), "limit is 128"),
        (json.dumps({"user_id": "x", "user_info": {"bio": "y" * 1100}}), "limit is 1024"),
    ],
)
def test_presence_channel_data_rejects(channel_data: str | None, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_presence_channel_data(channel_data)


def test_presence_limits_are_configurable() -> None:
    data = json.dumps({"user_id": "abcd", "user_info": {"a": "b"}})
    with pytest.raises(ValidationError):
        parse_presence_channel_data(data, max_user_id_length=3)
    with pytest.raises(ValidationError):
        parse_presence_channel_data(data, max_user_info_bytes=5)


# ------------------------------------------------------------------- user_data


def test_user_data_parses_fields() -> None:
    raw = '{"id":"u-1","user_info":{"n":1},"watchlist":["a","b"]}'
    user = parse_user_data(raw)
    assert (user.id, user.user_info, user.watchlist, user.user_data) == (
        "u-1",
        {"n": 1},
        ("a", "b"),
        raw,
    )


@pytest.mark.parametrize(
    ("user_data", "message"),
    [
        ("nope", "not valid JSON"),
        ('{"id":"a","user_info":"\\udfff"}', "not valid JSON"),
        ('{"id":5}', "non-empty string"),
        ('{"id":""}', "non-empty string"),
        ('{"id":"a b"}', "characters"),
        (json.dumps({"id": "x" * 185}), "characters"),
        ('{"id":"a","watchlist":"b"}', "watchlist"),
        (json.dumps({"id": "a", "watchlist": [str(i) for i in range(101)]}), "limit is 100"),
    ],
)
def test_user_data_rejects(user_data: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_user_data(user_data)
