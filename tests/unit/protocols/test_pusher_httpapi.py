"""Pusher HTTP API: request signatures (doc vector, independent HMAC, SDK interop) and bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from ordercast.errors import Unauthorized, ValidationError
from ordercast.protocols.pusher import httpapi as h

KEY = "278d425bdf160c739803"
SECRET = "7ad3773142a6692b25b8"
DOC_BODY = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
DOC_TS = 1353088179


def doc_query() -> dict[str, str]:
    return {
        "auth_key": KEY,
        "auth_timestamp": str(DOC_TS),
        "auth_version": "1.0",
        "body_md5": "ec365a775a4cd0599faeb73354201b6f",
        "auth_signature": "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
    }


def verify(
    query: Any,
    *,
    method: str = "POST",
    path: str = "/apps/3/events",
    body: bytes = DOC_BODY,
    now: float = DOC_TS,
) -> None:
    h.verify_request(
        method=method, path=path, query=query, body=body, app_key=KEY, secret=SECRET, now=now
    )


# ------------------------------------------------------------------- signatures


def test_rest_doc_vector() -> None:
    assert h.body_md5(DOC_BODY) == "ec365a775a4cd0599faeb73354201b6f"
    verify(doc_query())


def test_rest_doc_vector_independently() -> None:
    to_sign = (
        "POST\n/apps/3/events\n"
        f"auth_key={KEY}&auth_timestamp={DOC_TS}&auth_version=1.0"
        "&body_md5=ec365a775a4cd0599faeb73354201b6f"
    )
    assert h.string_to_sign("post", "/apps/3/events", doc_query()) == to_sign
    digest = hmac.new(SECRET.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    assert digest == doc_query()["auth_signature"]


def test_sign_request_round_trip_and_matches_doc() -> None:
    params = h.sign_request(
        method="POST",
        path="/apps/3/events",
        body=DOC_BODY,
        app_key=KEY,
        secret=SECRET,
        timestamp=DOC_TS,
    )
    assert params == doc_query()


def test_query_as_pairs_and_mixed_case_keys() -> None:
    verify(list(doc_query().items()))
    upper = {key.upper(): value for key, value in doc_query().items()}
    verify(upper)


def test_get_with_extra_params_sorted_and_unescaped() -> None:
    query = {"filter_by_prefix": "presence-", "info": "user_count,subscription_count"}
    params = h.sign_request(
        method="GET",
        path="/apps/3/channels",
        query=query,
        app_key=KEY,
        secret=SECRET,
        timestamp=DOC_TS,
    )
    assert "body_md5" not in params
    to_sign = (
        "GET\n/apps/3/channels\n"
        f"auth_key={KEY}&auth_timestamp={DOC_TS}&auth_version=1.0"
        "&filter_by_prefix=presence-&info=user_count,subscription_count"
    )
    expected = hmac.new(SECRET.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    assert params["auth_signature"] == expected
    verify(params, method="GET", path="/apps/3/channels", body=b"")


def test_get_with_empty_body_md5_like_python_sdk() -> None:
    params = h.sign_request(
        method="GET",
        path="/apps/3/channels",
        app_key=KEY,
        secret=SECRET,
        timestamp=DOC_TS,
        always_body_md5=True,
    )
    assert params["body_md5"] == "d41d8cd98f00b204e9800998ecf8427e"
    verify(params, method="GET", path="/apps/3/channels", body=b"")


@pytest.mark.parametrize("skew", [-600, 0, 600, 599.5])
def test_timestamp_window_accepts(skew: float) -> None:
    verify(doc_query(), now=DOC_TS - skew)


@pytest.mark.parametrize(("skew", "word"), [(-601, "ahead"), (601, "behind")])
def test_timestamp_window_rejects(skew: int, word: str) -> None:
    with pytest.raises(Unauthorized, match=word):
        verify(doc_query(), now=DOC_TS + skew)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"auth_key": None}, "missing auth_key"),
        ({"auth_key": "other"}, "unknown auth_key"),
        ({"auth_version": None}, "auth_version"),
        ({"auth_version": "2.0"}, "auth_version"),
        ({"auth_timestamp": None}, "auth_timestamp"),
        ({"auth_timestamp": "12.5"}, "auth_timestamp"),
        ({"auth_timestamp": "-5"}, "auth_timestamp"),
        ({"auth_timestamp": "\u00b2"}, "auth_timestamp"),
        ({"auth_signature": None}, "missing auth_signature"),
        ({"body_md5": None}, "missing body_md5"),
        ({"body_md5": "0" * 32}, "body_md5 does not match"),
        ({"auth_signature": "0" * 64}, "Invalid signature"),
        ({"extra": "1"}, "Invalid signature"),
    ],
)
def test_verify_rejects(change: dict[str, str | None], message: str) -> None:
    query = doc_query()
    for key, value in change.items():
        if value is None:
            query.pop(key)
        else:
            query[key] = value
    with pytest.raises(Unauthorized, match=message):
        verify(query)


def test_verify_rejects_other_method_path_body() -> None:
    with pytest.raises(Unauthorized):
        verify(doc_query(), method="PUT")
    with pytest.raises(Unauthorized):
        verify(doc_query(), path="/apps/4/events")
    with pytest.raises(Unauthorized, match="body_md5"):
        verify(doc_query(), body=DOC_BODY + b" ")


def test_repeated_parameter_is_rejected() -> None:
    pairs = [*doc_query().items(), ("auth_key", KEY)]
    with pytest.raises(Unauthorized, match="repeated"):
        verify(pairs)


def test_auth_key_of() -> None:
    assert h.auth_key_of(doc_query()) == KEY
    with pytest.raises(Unauthorized):
        h.auth_key_of({})


def test_python_sdk_requests_verify() -> None:
    pusher = pytest.importorskip("pusher")
    # The request builders of the SDK's inner client sign without sending anything.
    client = pusher.Pusher(app_id="3", key=KEY, secret=SECRET)._pusher_client
    requests = [
        client.trigger.make_request(["private-o-1", "orders"], "order_tracker", {"s": "é"}, "1.2"),
        client.trigger_batch.make_request(
            [{"channel": "private-o-1", "name": "order_update", "data": {"k": 1}}]
        ),
        client.channels_info.make_request("presence-", ["user_count"]),
        client.channel_info.make_request("presence-r-1", ["user_count"]),
        client.users_info.make_request("presence-r-1"),
    ]
    for request in requests:
        h.verify_request(
            method=request.method,
            path=request.path,
            query=request.query_params,
            body=request.body,
            app_key=KEY,
            secret=SECRET,
            now=float(request.query_params["auth_timestamp"]),
        )
    trigger = h.parse_trigger(requests[0].body)
    assert trigger.channels == ("private-o-1", "orders")
    assert trigger.socket_id == "1.2"
    assert json.loads(trigger.data) == {"s": "é"}
    (batch_event,) = h.parse_batch(requests[1].body)
    assert batch_event.channels == ("private-o-1",)


# ------------------------------------------------------------------- trigger bodies


def trigger_body(**fields: Any) -> bytes:
    body: dict[str, Any] = {"name": "order_tracker", "channel": "private-o-1", "data": "{}"}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def test_parse_trigger_single_channel() -> None:
    event = h.parse_trigger(trigger_body())
    assert event == h.TriggerEvent("order_tracker", ("private-o-1",), "{}", None, frozenset())


def test_parse_trigger_channels_info_socket_and_mapping_input() -> None:
    event = h.parse_trigger(
        {
            "name": "e",
            "channels": ["a", "presence-b", "a"],
            "data": "x",
            "socket_id": "1.2",
            "info": "user_count, subscription_count",
        }
    )
    assert event.channels == ("a", "presence-b")  # duplicates collapse, order kept
    assert event.socket_id == "1.2"
    assert event.info == {"user_count", "subscription_count"}


def test_data_limit_is_10kb_of_utf8() -> None:
    h.parse_trigger(trigger_body(data="x" * 10240))
    with pytest.raises(ValidationError, match="limit is 10240") as info:
        h.parse_trigger(trigger_body(data="é" * 5121))
    assert info.value.fields["too_large"] is True


def test_channel_count_limit() -> None:
    h.parse_trigger(trigger_body(channel=None, channels=[f"c{i}" for i in range(100)]))
    with pytest.raises(ValidationError, match="limit is 100"):
        h.parse_trigger(trigger_body(channel=None, channels=[f"c{i}" for i in range(101)]))


def test_custom_limits() -> None:
    limits = h.HttpApiLimits(max_data_bytes=3, max_channels_per_trigger=1, max_batch_events=1)
    with pytest.raises(ValidationError):
        h.parse_trigger(trigger_body(data="abcd"), limits)
    with pytest.raises(ValidationError):
        h.parse_trigger(trigger_body(channel=None, channels=["a", "b"]), limits)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"name":"e","channel":"c","data":"\\ud800"}', "not valid JSON"),
        (b'{"name":"e","channel":"c","data":"x","n":Infinity}', "not valid JSON"),
        (trigger_body(name=""), "name"),
        (trigger_body(name="n" * 201), "limit is 200"),
        (trigger_body(data=None), "data must be a string"),
        (trigger_body(data={"a": 1}), "data must be a string"),
        (trigger_body(channel=None), "channel is required"),
        (trigger_body(channels=["a"]), "not both"),
        (trigger_body(channel=None, channels=[]), "non-empty list"),
        (trigger_body(channel=None, channels="a"), "non-empty list"),
        (trigger_body(channel="bad channel"), "invalid channel name"),
        (trigger_body(channel=None, channels=["private-encrypted-a", "b"]), "encrypted"),
        (trigger_body(socket_id="abc"), "socket_id"),
        (trigger_body(socket_id=12), "socket_id"),
        (trigger_body(info="user_count,bogus"), "bogus"),
        (trigger_body(info=["user_count"]), "comma-separated"),
    ],
)
def test_parse_trigger_rejects(body: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        h.parse_trigger(body)


def test_parse_batch() -> None:
    body = json.dumps(
        {
            "batch": [
                {"name": "a", "channel": "c1", "data": "1"},
                {"name": "b", "channel": "presence-c2", "data": "2", "info": "user_count"},
            ]
        }
    )
    events = h.parse_batch(body)
    assert [e.name for e in events] == ["a", "b"]
    assert events[1].info == {"user_count"}


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (None, "non-empty list"),
        ([], "non-empty list"),
        ([{"name": "a", "channel": "c", "data": "1"}] * 11, "limit is 10"),
        (["x"], r"batch\[0\] must be"),
        ([{"name": "a", "channels": ["c"], "data": "1"}], "single 'channel'"),
        ([{"name": "a", "channel": "c", "data": "1"}, {"name": "a", "data": "1"}], r"batch\[1\]"),
    ],
)
def test_parse_batch_rejects(batch: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        h.parse_batch(json.dumps({"batch": batch}))


def test_channel_attributes_apply_per_kind() -> None:
    info = frozenset({"user_count", "subscription_count"})
    assert h.channel_attributes("presence-a", info, user_count=2, subscription_count=3) == {
        "user_count": 2
    }
    assert h.channel_attributes("private-a", info, user_count=0, subscription_count=3) == {
        "subscription_count": 3
    }
    assert h.channel_attributes("a", frozenset(), user_count=0, subscription_count=3) == {}


# ------------------------------------------------------------------- channel queries


def test_parse_channels_query() -> None:
    query = h.parse_channels_query(
        {"filter_by_prefix": "presence-", "info": "user_count", "auth_key": KEY}
    )
    assert query == h.ChannelsQuery("presence-", frozenset({"user_count"}))
    assert h.parse_channels_query({}) == h.ChannelsQuery(None, frozenset())
    with pytest.raises(ValidationError, match="presence-"):
        h.parse_channels_query({"info": "user_count"})
    with pytest.raises(ValidationError, match="presence-"):
        h.parse_channels_query({"info": "user_count", "filter_by_prefix": "private-"})


def test_parse_channel_info() -> None:
    assert h.parse_channel_info("presence-a", {"info": "user_count,subscription_count"}) == {
        "user_count",
        "subscription_count",
    }
    assert h.parse_channel_info("cache-a", {"info": "cache"}) == {"cache"}
    assert h.parse_channel_info("a", {}) == frozenset()
    with pytest.raises(ValidationError, match="presence"):
        h.parse_channel_info("private-a", {"info": "user_count"})
    with pytest.raises(ValidationError, match="cache"):
        h.parse_channel_info("private-a", {"info": "cache"})
    with pytest.raises(ValidationError):
        h.parse_channel_info("bad name", {})


def test_validate_users_channel() -> None:
    assert h.validate_users_channel("presence-r-1") == "presence-r-1"
    with pytest.raises(ValidationError, match="presence"):
        h.validate_users_channel("private-o-1")
