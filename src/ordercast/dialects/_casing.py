"""snake_case → camelCase, for the dialects whose platforms speak camelCase."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# camel() of the keys seen so far: an order's keys repeat in every message (items,
# options, consumer), and a Doshii body camelizes every one of them. Bounded: the keys of
# free-form data (e.g. a courier's details) come from outside.
_CAMEL: dict[str, str] = {}
_CAMEL_MAX = 4096
_SCALARS = frozenset({str, int, float, bool, type(None)})


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel_key(key: Any) -> str:
    name = str(key)
    out = _CAMEL.get(name)
    if out is None:
        if len(_CAMEL) >= _CAMEL_MAX:
            _CAMEL.clear()
        out = _CAMEL[name] = camel(name)
    return out


def camelize(value: Any) -> Any:
    """The same JSON value with every mapping key in camelCase, recursively."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict or (kind is not list and isinstance(value, Mapping)):
        return {_camel_key(k): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value
