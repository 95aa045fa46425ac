"""snake_case → camelCase, for the dialects whose platforms speak camelCase."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camelize(value: Any) -> Any:
    """The same JSON value with every mapping key in camelCase, recursively."""
    if isinstance(value, Mapping):
        return {camel(str(k)): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value
