"""Fan-out encoding: one render per destination, a cheap per-subscriber splice."""

from __future__ import annotations

import pytest

from ordercast.protocols.stomp import (
    EncodedMessage,
    Frame,
    FrameParser,
    encode_message,
    serialize,
    subscription_prefix,
)

BODY = b'{"id":"8f3f21b6","status":"COMPLETED","note":"caf\xc3\xa9\\n"}'


def parse_one(data: bytes, *, unescape: bool = True) -> Frame:
    parser = FrameParser(unescape=unescape)
    parser.feed(data)
    [frame] = parser.frames()
    return frame


def test_encoded_message_headers_and_tail() -> None:
    message = encode_message("/kds/t1/v1", "t1-o1-7", BODY, headers=[("seq", "7")])
    assert message.headers == (
        ("destination", "/kds/t1/v1"),
        ("message-id", "t1-o1-7"),
        ("content-type", "application/json"),
        ("seq", "7"),
        ("content-length", str(len(BODY))),
    )
    assert message.tail == (
        b"destination:/kds/t1/v1\nmessage-id:t1-o1-7\ncontent-type:application/json\n"
        b"seq:7\ncontent-length:%d\n\n" % len(BODY) + BODY + b"\x00"
    )
    assert message.raw_tail is message.tail  # nothing to escape: one copy


@pytest.mark.parametrize("sub_id", ["sub-0", "0", "a:b", "back\\slash", "caf\u00e9", "x\ny"])
@pytest.mark.parametrize("ack", [None, "1", "ack:42"])
def test_splice_is_byte_identical_to_full_serialize(sub_id: str, ack: str | None) -> None:
    message = encode_message("/order-changes/u1/o1", "m-1", BODY, headers=[("seq", "12")])
    spliced = message.for_subscription(sub_id, ack)
    assert spliced == serialize(message.to_frame(sub_id, ack))
    assert spliced == message.splice(subscription_prefix(sub_id), ack)
    frame = parse_one(spliced)
    assert frame.get("subscription") == sub_id
    assert frame.get("ack") == ack
    assert frame.body == BODY
    assert frame.get("content-length") == str(len(BODY))


def test_full_frame_header_order() -> None:
    message = encode_message("/venue/t/v", "m", "{}", content_type="application/json;charset=utf-8")
    frame = message.to_frame("s", "a")
    assert [k for k, _ in frame.headers] == [
        "subscription",
        "ack",
        "destination",
        "message-id",
        "content-type",
        "content-length",
    ]
    assert frame.get("content-type") == "application/json;charset=utf-8"


def test_str_body_is_utf8_and_content_length_counts_octets() -> None:
    message = encode_message("/d", "m", "caf\u00e9")
    assert message.body == b"caf\xc3\xa9"
    assert dict(message.headers)["content-length"] == "5"


def test_body_with_nul_survives_thanks_to_content_length() -> None:
    body = b"a\x00b"
    frame = parse_one(encode_message("/d", "m", body).for_subscription("s"))
    assert frame.body == body


def test_escaped_destination_and_raw_variant_for_stomp10() -> None:
    message = encode_message("/x:y", "id\\1", b"{}")
    assert message.raw_tail is not message.tail
    assert b"destination:/x\\cy\n" in message.tail
    assert b"destination:/x:y\n" in message.raw_tail
    escaped = message.for_subscription("s:1", "a:1")
    assert parse_one(escaped).header_map()["destination"] == "/x:y"
    raw = message.for_subscription("s:1", "a:1", escape=False)
    assert raw == serialize(message.to_frame("s:1", "a:1"), escape=False)
    assert parse_one(raw, unescape=False).get("subscription") == "s:1"


def test_subscription_prefix() -> None:
    assert subscription_prefix("sub-0") == b"MESSAGE\nsubscription:sub-0\n"
    assert subscription_prefix("a:b") == b"MESSAGE\nsubscription:a\\cb\n"
    assert subscription_prefix("a:b", escape=False) == b"MESSAGE\nsubscription:a:b\n"
    with pytest.raises(ValueError):
        subscription_prefix("a\nb", escape=False)


@pytest.mark.parametrize(
    "headers",
    [[("bad:name", "v")], [("", "v")], [("x", "line\nbreak")], [("x", "cr\r")]],
)
def test_invalid_extra_headers(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        encode_message("/d", "m", b"", headers=headers)


def test_destination_with_newline_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_message("/d\n", "m", b"")


def test_encoded_message_is_immutable_and_shareable() -> None:
    message = encode_message("/d", "m", b"{}")
    assert isinstance(message, EncodedMessage)
    with pytest.raises(AttributeError):
        message.tail = b""  # type: ignore[misc]
    # Many subscribers, one encoding: each splice is a fresh bytes object.
    frames = {message.for_subscription(f"sub-{i}") for i in range(100)}
    assert len(frames) == 100


def test_a_header_name_with_a_backslash_is_escaped_every_time() -> None:
    # Valid names are remembered to skip re-checking them; one that needs escaping must
    # never be remembered as "nothing to escape".
    for _ in range(2):
        message = encode_message("/kds/t1/v1", "m-1", BODY, headers=[("x\\y", "1")])
        assert b"x\\\\y:1\n" in message.tail
        assert b"x\\y:1\n" in message.raw_tail
        assert parse_one(message.for_subscription("s")).header_map()["x\\y"] == "1"


@pytest.mark.parametrize("name", ["", "a:b", "a\nb", "a\rb"])
def test_invalid_header_names_are_refused_every_time(name: str) -> None:
    for _ in range(2):
        with pytest.raises(ValueError):
            encode_message("/kds/t1/v1", "m-1", BODY, headers=[(name, "1")])
