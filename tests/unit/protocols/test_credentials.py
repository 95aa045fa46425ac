"""The one parser of ``Authorization`` headers, and byte-wise secret comparison."""

from __future__ import annotations

import base64

import pytest

from ordercast.errors import Unauthorized
from ordercast.protocols.credentials import Basic, Bearer, parse_authorization, same_secret


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        (_basic(b"key:secret"), Basic("key", "secret", True)),
        (_basic(b"key:se:cret"), Basic("key", "se:cret", True)),
        (_basic(b"key:"), Basic("key", "", True)),
        (_basic(b"key"), Basic("key", "", False)),
        ("bAsIc " + base64.b64encode(b"k:s").decode(), Basic("k", "s", True)),
        (_basic("k\u00e9y:s\u00e9cret".encode()), Basic("k\u00e9y", "s\u00e9cret", True)),
        ("Bearer abc.def", Bearer("abc.def")),
        ("bearer   tok  ", Bearer("tok")),
        ("Bearer ", None),
        ("Bearer", None),
        ("Digest username=x", None),
        ("Token abc", None),
    ],
)
def test_parses_the_schemes_each_caller_accepts(
    header: str | None, expected: Basic | Bearer | None
) -> None:
    assert parse_authorization(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"\xff\xfe:secret").decode(),  # not UTF-8
        "Basic caf\u00e9",  # non-ASCII where base64 is expected
        "Basic abc",  # bad padding
    ],
)
def test_malformed_basic_is_unauthorized_never_another_error(header: str) -> None:
    with pytest.raises(Unauthorized, match="malformed Basic credentials"):
        parse_authorization(header)


def test_same_secret_compares_any_text_without_raising() -> None:
    assert same_secret("s\u00e9cret", "s\u00e9cret")
    assert not same_secret("s\u00e9cret", "secret")
    assert not same_secret("\ud800", "secret")  # a lone surrogate from a JSON escape
    assert same_secret(b"abc", "abc")
