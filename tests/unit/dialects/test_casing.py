"""camelize: every mapping key in camelCase, recursively; everything else as it was."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ordercast.dialects import _casing
from ordercast.dialects._casing import camel, camelize


def reference(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {camel(str(k)): reference(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reference(v) for v in value]
    return value


class Tags(list[Any]):
    pass


def test_camelize_matches_the_plain_recursion() -> None:
    value = {
        "order_id": "o1",
        "included_items": [{"pos_id": "x", "unit_price": 1, "options": []}],
        "tuple_kept": ("a_b", {"not_touched": 1}),
        "ordered": OrderedDict([("delivery_eta", None), ("driver_name", "Bo")]),
        "proxy": MappingProxyType({"tracking_url": "u"}),
        "tags": Tags([{"menu_dir": "d"}]),
        3: True,
        "__dunder_": 1.5,
        "trailing_": "s",
    }
    assert camelize(value) == reference(value)
    assert camelize(value)["ordered"] == {"deliveryEta": None, "driverName": "Bo"}
    assert camelize(value)["tupleKept"] == ("a_b", {"not_touched": 1})
    for scalar in ("a_b", 1, 1.5, True, None):
        assert camelize(scalar) == scalar


def test_the_key_memo_stays_bounded() -> None:
    for i in range(_casing._CAMEL_MAX * 2):
        assert camelize({f"key_{i}_x": i}) == {f"key{i}X": i}
    assert len(_casing._CAMEL) <= _casing._CAMEL_MAX
