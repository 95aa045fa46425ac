"""ordercast.fastjson (orjson) writes what the standard library's compact encoder wrote,
byte for byte, for what ordercast's documents hold; where it cannot, the standard library
answers; the two documented differences (shortest floats, NaN as null) are pinned here."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import TypeAdapter

from ordercast import fastjson
from ordercast.errors import ValidationError
from ordercast.protocols.webhooks import encode_body as reference_body
from support.orders import sample_order

TEXTS = [
    "plain",
    "é, ß, 中文, emoji 🍔",
    'quotes " and \\ backslashes / slash',
    "".join(chr(c) for c in range(0x20)) + "\x7f",  # every control character, and DEL
    "\u2028\u2029 line separators",
    "",
]
NUMBERS = [0, -1, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, -0.25, 100.0, True, False]


def order_doc() -> dict[str, Any]:
    """An order as the store keeps it (``Order.as_dict``), with Unicode and quotes where a
    menu and a consumer bring them."""
    order = sample_order()
    order.items[0]["name"] = "Crème brûlée burger 🍔"
    order.consumer = {"name": 'Zoë "Z" O\'Brien', "address": {"city": "Łódź", "lines": ["1"]}}
    return order.as_dict()


def corpus() -> list[Any]:
    doc = order_doc()
    return [
        doc,
        {"texts": TEXTS, "numbers": NUMBERS, "none": None, "empty": [{}, [], ""]},
        {"z": 1, "a": {"y": [3, 2, 1], "b": "x"}, "É": 2, "e": 3, "🍔": 4},  # key order
        [doc, doc["items"]],
        TEXTS,
        NUMBERS,
    ]


def std(value: Any, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_the_same_bytes_as_pydantic_for_a_command_answer(index: int) -> None:
    # The command routes answer with fastjson.dumps where FastAPI would use pydantic's
    # dump_json of a dict[str, Any]: the bytes a client reads must not change.
    value = corpus()[index]
    assert fastjson.dumps(value) == TypeAdapter(dict[str, Any]).dump_json(value)


@pytest.mark.parametrize("index", range(len(corpus())))
@pytest.mark.parametrize("sort_keys", [False, True])
def test_the_same_bytes_as_the_standard_library(index: int, sort_keys: bool) -> None:
    value = corpus()[index]
    expected = std(value, sort_keys)
    assert fastjson.dumps_str(value, sort_keys=sort_keys) == expected
    assert fastjson.dumps(value, sort_keys=sort_keys) == expected.encode()
    if sort_keys:
        assert fastjson.encode_body(value) == reference_body(value) == expected.encode()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2**64, "18446744073709551616"),  # beyond 64 bits
        (-(2**70), "-1180591620717411303424"),
        ({1: "a", "b": [2**65]}, '{"1":"a","b":[36893488147419103232]}'),  # a key not a str
        ("lone \ud800 surrogate", '"lone \\ud800 surrogate"'),  # escaped: valid UTF-8
        ({"é": "\ud83d"}, '{"\\u00e9":"\\ud83d"}'),  # the whole value ASCII-escaped
    ],
)
def test_what_orjson_refuses_the_standard_library_encodes(value: Any, text: str) -> None:
    assert fastjson.dumps_str(value) == text
    assert fastjson.dumps(value) == text.encode()
    assert json.loads(text) == json.loads(json.dumps(value))  # nothing lost


def test_a_body_that_cannot_be_encoded_is_refused_as_before() -> None:
    for value in ({"x": object()}, {"s": {1, 2}}, "\ud800"):
        with pytest.raises(ValidationError):
            reference_body(value)
        with pytest.raises(ValidationError):
            fastjson.encode_body(value)
    assert fastjson.encode_body({"b": 2**70, "a": 1}) == reference_body({"b": 2**70, "a": 1})
    with pytest.raises(TypeError):
        fastjson.dumps({"x": object()})


def test_the_documented_differences() -> None:
    # Shortest floats: the same number, fewer characters.
    assert fastjson.dumps_str([1e-05, 1e16, 0.1]) == "[0.00001,1e+16,0.1]"
    assert json.loads(fastjson.dumps_str([1e-05, 1e16, 0.1])) == [1e-05, 1e16, 0.1]
    # NaN and infinities have no JSON token: null, where the standard library wrote NaN
    # (which clients' parsers reject) or refused the whole change (webhook bodies).
    values = {"n": math.nan, "i": math.inf, "m": -math.inf}
    assert fastjson.dumps_str(values) == '{"n":null,"i":null,"m":null}'
    assert fastjson.encode_body(values) == b'{"i":null,"m":null,"n":null}'
    with pytest.raises(ValidationError):
        reference_body(values)
