"""STOMP frame codec: parsing (split, packed, limits, escaping) and serialization."""

from __future__ import annotations

from typing import Any

import pytest

from ordercast.errors import ProtocolError
from ordercast.protocols.stomp import (
    Frame,
    FrameParser,
    FrameTooLarge,
    MalformedFrame,
    escape_header,
    serialize,
    unescape_header,
)


def parse_all(*chunks: bytes | str, **kwargs: Any) -> list[Frame]:
    parser = FrameParser(**kwargs)
    frames: list[Frame] = []
    for chunk in chunks:
        parser.feed(chunk)
        frames.extend(parser.frames())
    return frames


# -- basic parsing ------------------------------------------------------------------------------


def test_parses_a_simple_frame() -> None:
    [frame] = parse_all(b"SUBSCRIBE\nid:0\ndestination:/kds/t/v\n\n\x00")
    assert frame == Frame("SUBSCRIBE", [("id", "0"), ("destination", "/kds/t/v")], b"")


def test_frame_without_headers() -> None:
    [frame] = parse_all(b"DISCONNECT\n\n\x00")
    assert frame == Frame("DISCONNECT", [], b"")


def test_accepts_str_chunks_as_utf8() -> None:
    [frame] = parse_all("SEND\ndestination:/q/caf\u00e9\n\nh\u00e9llo\x00")
    assert frame.get("destination") == "/q/caf\u00e9"
    assert frame.body == "h\u00e9llo".encode()


def test_crlf_line_endings() -> None:
    [frame] = parse_all(b"CONNECT\r\naccept-version:1.2\r\nhost:h\r\n\r\n\x00")
    assert frame.command == "CONNECT"
    assert frame.headers == [("accept-version", "1.2"), ("host", "h")]


def test_mixed_line_endings() -> None:
    [frame] = parse_all(b"SUBSCRIBE\r\nid:1\ndestination:/d\r\n\n\x00")
    assert frame.headers == [("id", "1"), ("destination", "/d")]


def test_body_without_content_length_runs_to_nul() -> None:
    [frame] = parse_all(b"SEND\ndestination:/d\n\nhello\nworld\x00")
    assert frame.body == b"hello\nworld"


def test_content_length_body_may_contain_nul() -> None:
    body = b"a\x00b\x00\x00c"
    data = b"SEND\ndestination:/d\ncontent-length:%d\n\n" % len(body) + body + b"\x00"
    [frame] = parse_all(data)
    assert frame.body == body


def test_content_length_zero() -> None:
    [frame] = parse_all(b"SEND\ncontent-length:0\n\n\x00")
    assert frame.body == b""


def test_content_length_without_trailing_nul_is_malformed() -> None:
    with pytest.raises(MalformedFrame, match="not followed by NUL"):
        parse_all(b"SEND\ncontent-length:3\n\nabcd\x00")


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", " 3", "\u0663"])
def test_invalid_content_length(value: str) -> None:
    with pytest.raises(MalformedFrame, match="content-length"):
        parse_all(f"SEND\ncontent-length:{value}\n\nabc\x00")


def test_first_content_length_wins() -> None:
    [frame] = parse_all(b"SEND\ncontent-length:2\ncontent-length:5\n\na\x00\x00")
    assert frame.body == b"a\x00"


def test_repeated_headers_first_wins_and_all_are_kept() -> None:
    [frame] = parse_all(b"SUBSCRIBE\nid:first\nid:second\ndestination:/d\n\n\x00")
    assert frame.get("id") == "first"
    assert frame.header_map() == {"id": "first", "destination": "/d"}
    assert frame.headers[:2] == [("id", "first"), ("id", "second")]
    assert frame.get("missing") is None
    assert frame.get("missing", "x") == "x"


def test_header_values_are_not_trimmed_and_split_at_first_colon() -> None:
    [frame] = parse_all(b"CONNECT\nlogin: a:b:c \n\n\x00")
    assert frame.get("login") == " a:b:c "


def test_empty_header_value_is_allowed() -> None:
    [frame] = parse_all(b"CONNECT\npasscode:\n\n\x00")
    assert frame.get("passcode") == ""


# -- split and packed ---------------------------------------------------------------------------

FRAME_BYTES = (
    b"SUBSCRIBE\r\nid:sub-0\r\ndestination:/kds/t/v\r\nx-since-seq:7\r\n\r\n\x00"
    b"SEND\ndestination:/d\ncontent-length:5\n\na\x00b\x00c\x00\n\n"
    b"DISCONNECT\nreceipt:close-1\n\n\x00\r\n"
)


def test_packed_frames_in_one_chunk() -> None:
    frames = parse_all(FRAME_BYTES)
    assert [f.command for f in frames] == ["SUBSCRIBE", "SEND", "DISCONNECT"]
    assert frames[1].body == b"a\x00b\x00c"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13])
def test_split_at_every_boundary(size: int) -> None:
    chunks = [FRAME_BYTES[i : i + size] for i in range(0, len(FRAME_BYTES), size)]
    assert parse_all(*chunks) == parse_all(FRAME_BYTES)


def test_split_at_each_single_offset() -> None:
    expected = parse_all(FRAME_BYTES)
    for cut in range(1, len(FRAME_BYTES)):
        assert parse_all(FRAME_BYTES[:cut], FRAME_BYTES[cut:]) == expected, cut


def test_next_frame_returns_none_until_complete() -> None:
    parser = FrameParser()
    parser.feed(b"SUBSCRIBE\nid:0\n")
    assert parser.next_frame() is None
    parser.feed(b"destination:/d\n\nbo")
    assert parser.next_frame() is None
    parser.feed(b"dy\x00SEND")
    frame = parser.next_frame()
    assert frame is not None and frame.body == b"body"
    assert parser.next_frame() is None
    assert parser.buffered == 4


def test_heartbeat_eols_between_frames_are_skipped() -> None:
    parser = FrameParser()
    for chunk in (b"\n", b"\r\n", b"\n\n"):
        parser.feed(chunk)
        assert parser.next_frame() is None
    assert parser.buffered == 0
    parser.feed(b"\nDISCONNECT\n\n\x00\n")
    assert [f.command for f in parser.frames()] == ["DISCONNECT"]
    assert parser.buffered == 0


# -- escaping -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["plain", "a:b", "back\\slash", "line\nfeed", "carriage\rreturn", "\\n literally", ":\\\r\n:"],
)
def test_escape_round_trip(text: str) -> None:
    escaped = escape_header(text)
    assert "\n" not in escaped and "\r" not in escaped and ":" not in escaped
    assert unescape_header(escaped) == text


def test_escape_table() -> None:
    assert escape_header("a\\b\rc\nd:e") == "a\\\\b\\rc\\nd\\ce"


@pytest.mark.parametrize("bad", ["\\t", "x\\", "\\a", "\\C"])
def test_undefined_escape_is_fatal(bad: str) -> None:
    with pytest.raises(MalformedFrame, match="escape"):
        unescape_header(bad)


def test_parser_unescapes_headers_of_ordinary_frames() -> None:
    [frame] = parse_all(b"SUBSCRIBE\nid:a\\cb\ndestination:/d\\n\\\\x\nk\\cey:v\n\n\x00")
    assert frame.headers == [("id", "a:b"), ("destination", "/d\n\\x"), ("k:ey", "v")]


def test_parser_rejects_undefined_escape_in_a_frame() -> None:
    with pytest.raises(MalformedFrame):
        parse_all(b"SUBSCRIBE\nid:a\\tb\n\n\x00")


@pytest.mark.parametrize("command", ["CONNECT", "CONNECTED"])
def test_connect_and_connected_headers_are_not_unescaped(command: str) -> None:
    [frame] = parse_all(f"{command}\nlogin:a\\cb\\t\npasscode:x:y\n\n\x00")
    assert frame.headers == [("login", "a\\cb\\t"), ("passcode", "x:y")]


def test_unescape_can_be_switched_off_for_stomp_10() -> None:
    parser = FrameParser(unescape=False)
    parser.feed(b"SUBSCRIBE\nid:a\\cb\\t\ndestination:/d\n\n\x00")
    [frame] = parser.frames()
    assert frame.get("id") == "a\\cb\\t"


def test_serialize_escapes_and_parse_round_trips() -> None:
    frame = Frame("MESSAGE", [("weird:key", "line\nbreak\\:"), ("receipt-id", "r\r1")], b"x")
    data = serialize(frame)
    assert data == b"MESSAGE\nweird\\ckey:line\\nbreak\\\\\\c\nreceipt-id:r\\r1\n\nx\x00"
    assert parse_all(data) == [frame]


def test_serialize_does_not_escape_connected() -> None:
    frame = Frame("CONNECTED", [("version", "1.2"), ("server", "ordercast/0.1 (a:b)")])
    assert serialize(frame) == b"CONNECTED\nversion:1.2\nserver:ordercast/0.1 (a:b)\n\n\x00"
    assert parse_all(serialize(frame)) == [frame]


@pytest.mark.parametrize("headers", [[("k", "a\nb")], [("k", "a\rb")], [("k:x", "v")], [("", "v")]])
def test_serialize_refuses_unrepresentable_raw_headers(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        serialize(Frame("CONNECTED", headers))
    with pytest.raises(ValueError):
        serialize(Frame("RECEIPT", headers), escape=False)


def test_serialize_without_escape_keeps_colons_in_values() -> None:
    data = serialize(Frame("RECEIPT", [("receipt-id", "a:b\\c")]), escape=False)
    assert data == b"RECEIPT\nreceipt-id:a:b\\c\n\n\x00"


def test_serialize_writes_body_verbatim_and_ends_with_nul() -> None:
    body = b"\x00\x01{}"
    frame = Frame("MESSAGE", [("content-length", "4")], body)
    data = serialize(frame)
    assert data.endswith(b"\n\n" + body + b"\x00")
    assert parse_all(data) == [frame]


# -- malformed input and limits -----------------------------------------------------------------


def test_header_line_without_colon() -> None:
    with pytest.raises(MalformedFrame, match="malformed header"):
        parse_all(b"SUBSCRIBE\nid\n\n\x00")


def test_header_with_empty_name() -> None:
    with pytest.raises(MalformedFrame):
        parse_all(b"SUBSCRIBE\n:v\n\n\x00")


def test_invalid_utf8_headers() -> None:
    with pytest.raises(MalformedFrame, match="UTF-8"):
        parse_all(b"SUBSCRIBE\nid:\xff\xfe\n\n\x00")


@pytest.mark.parametrize("line", [b"A:B", b"GET / HTTP/1.1", b"SEND ", b"\x01X", b"1ACK"])
def test_invalid_command_line(line: bytes) -> None:
    with pytest.raises(MalformedFrame, match="command"):
        parse_all(line + b"\n\n\x00")


def test_errors_are_protocol_errors_and_sticky() -> None:
    parser = FrameParser()
    parser.feed(b"SUBSCRIBE\nbad\n\n\x00DISCONNECT\n\n\x00")
    with pytest.raises(ProtocolError) as first:
        parser.next_frame()
    with pytest.raises(ProtocolError) as second:
        parser.next_frame()
    assert first.value is second.value
    assert first.value.code == "stomp_malformed_frame"


def test_frame_too_large_by_content_length_fails_before_buffering_body() -> None:
    parser = FrameParser(max_frame_size=100)
    parser.feed(b"SEND\ncontent-length:1000\n\n")
    with pytest.raises(FrameTooLarge, match="100-octet limit"):
        parser.next_frame()


def test_frame_too_large_without_content_length() -> None:
    parser = FrameParser(max_frame_size=100)
    parser.feed(b"SEND\n\n" + b"x" * 50)
    assert parser.next_frame() is None
    parser.feed(b"x" * 50)
    with pytest.raises(FrameTooLarge):
        parser.next_frame()


def test_frame_exactly_at_the_limit_is_accepted() -> None:
    data = b"SEND\n\n" + b"x" * 93 + b"\x00"
    assert len(data) == 100
    [frame] = parse_all(data, max_frame_size=100)
    assert len(frame.body) == 93
    with pytest.raises(FrameTooLarge):
        parse_all(b"SEND\n\n" + b"x" * 94 + b"\x00", max_frame_size=100)


def test_unterminated_headers_too_large() -> None:
    parser = FrameParser(max_frame_size=64, max_header_line=1000)
    parser.feed(b"SUBSCRIBE\n" + b"a:b\n" * 20)
    with pytest.raises(FrameTooLarge):
        parser.next_frame()


def test_too_many_headers() -> None:
    headers = "".join(f"h{i}:v\n" for i in range(6))
    with pytest.raises(FrameTooLarge, match="more than 5 headers"):
        parse_all(f"SUBSCRIBE\n{headers}\n\x00", max_headers=5)
    [frame] = parse_all(f"SUBSCRIBE\n{headers}\n\x00", max_headers=6)
    assert len(frame.headers) == 6


def test_too_many_headers_detected_while_incomplete() -> None:
    parser = FrameParser(max_headers=5)
    parser.feed("SUBSCRIBE\n" + "h:v\n" * 10)
    with pytest.raises(FrameTooLarge):
        parser.next_frame()


def test_header_line_too_long() -> None:
    with pytest.raises(FrameTooLarge, match="header line longer than 10"):
        parse_all(b"CONNECT\nlogin:" + b"x" * 20 + b"\n\n\x00", max_header_line=10)


def test_header_line_too_long_detected_while_incomplete() -> None:
    parser = FrameParser(max_header_line=10)
    parser.feed(b"CONNECT\nlogin:" + b"x" * 20)
    with pytest.raises(FrameTooLarge):
        parser.next_frame()


def test_command_line_too_long() -> None:
    with pytest.raises(FrameTooLarge):
        parse_all(b"X" * 30 + b"\n\n\x00", max_header_line=10)


def test_many_frames_do_not_grow_the_buffer() -> None:
    parser = FrameParser()
    for _ in range(1000):
        parser.feed(b"ACK\nid:1\n\n\x00\n")
        assert parser.next_frame() is not None
    assert parser.buffered <= 1
