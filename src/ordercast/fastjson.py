"""Compact JSON for the hot paths, encoded by orjson (a maintained encoder written in Rust).

Every order change encodes the order document the store keeps, the events' data, each
webhook body and each socket message; with the standard library's encoder that was 9 % of
the serving process's CPU in a rush and a fifth of the SQLite write transaction's
(docs/benchmarks.md, "JSON by orjson"). orjson encodes a rush order's document in ~1 µs
where ``json.dumps`` takes ~14.

The output is the standard library's compact form (``separators=(",", ":")``, UTF-8, no
``\\u`` escapes but control characters; keys in insertion order, or sorted): byte for byte
the same for what ordercast's documents hold (strings, integers, booleans, null, lists,
objects with string keys), tested against ``json.dumps`` in tests/unit/test_fastjson.py.
Where the two differ:

* a float is written in the form of its shortest round trip, ``1e-05`` as ``0.00001``;
* NaN and ±Infinity, which JSON has no token for, are written ``null`` (the standard
  library wrote ``NaN``, which no JSON parser of a client accepts, or refused the change);
* what orjson does not encode (integers beyond 64 bits, keys that are not strings, strings
  with lone surrogates) is handed to the standard library: compact and ASCII-escaped (a
  lone surrogate as ``\ud800``, so the text is always valid UTF-8), or its error.

The pure layers (``protocols/``, ``dialects/``) keep the standard library (they import
nothing else); an adapter passes :func:`dumps_str` in where a dialect takes an encoder.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ordercast.protocols.webhooks import encode_body as _reference_body

_SORTED = orjson.OPT_SORT_KEYS


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """``value`` as compact UTF-8 JSON (see the module docstring for the differences from
    ``json.dumps``); raises what ``json.dumps`` raises for what neither can encode."""
    try:
        return orjson.dumps(value, option=_SORTED if sort_keys else None)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode()


def dumps_str(value: Any, *, sort_keys: bool = False) -> str:
    """:func:`dumps` as text (a ``str`` column, a socket message's data)."""
    return dumps(value, sort_keys=sort_keys).decode()


def encode_body(value: Any) -> bytes:
    """A webhook body: ``protocols.webhooks.encode_body``'s contract (compact, UTF-8, keys
    sorted so equal payloads give equal bytes and signatures; ``ValidationError`` for what
    cannot be encoded), by orjson. What orjson refuses goes to that function."""
    try:
        return orjson.dumps(value, option=_SORTED)
    except orjson.JSONEncodeError:
        return _reference_body(value)
