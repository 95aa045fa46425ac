"""Every (state, target) pair of both lifecycles, against matrices written out by hand.

A = applied, S = stale (recorded, not applied), D = duplicate, I = invalid (409).
"""

from __future__ import annotations

import pytest

from ordercast.domain.lifecycle import (
    CourierStatus,
    Move,
    OrderStatus,
    classify_courier_move,
    classify_order_move,
)

CODES = {"A": Move.APPLY, "S": Move.STALE, "D": Move.DUPLICATE, "I": Move.INVALID}

ORDER_COLUMNS = [
    "draft", "priced", "submitted", "accepted", "held", "preparing",
    "ready", "handed_off", "completed", "rejected", "cancelled", "failed",
]  # fmt: skip
ORDER_MATRIX = """
draft       D A A A A A A A A A A A
priced      S D A A A A A A A A A A
submitted   S S D A A A A A A A A A
accepted    S S S D A A A A A A A A
held        S S S S D A A A A A A A
preparing   S S S S S D A A A A A A
ready       S S S S S S D A A A A A
handed_off  S S S S S S S D A A A A
completed   I I I I I I I I D I I I
rejected    I I I I I I I I I D I I
cancelled   I I I I I I I I I I D I
failed      I I I I I I I I I I I D
"""

COURIER_COLUMNS = [
    "requested", "unassigned", "assigned", "at_pickup", "picked_up", "at_dropoff",
    "returning", "delivered", "returned", "cancelled", "failed",
]  # fmt: skip
COURIER_MATRIX = """
requested   D A A A A A I A I A A
unassigned  S D A A A A I A I A A
assigned    S A D A A A I A I A A
at_pickup   S A S D A A I A I A A
picked_up   S S S S D A A A A A A
at_dropoff  S S S S S D A A A A A
returning   S S S S S S D I A A A
delivered   I I I I I I I D I I I
returned    I I I I I I I I D I I
cancelled   I I I I I I I I I D I
failed      I I I I I I I I I I D
"""


def _pairs(matrix: str, columns: list[str]) -> list[tuple[str, str, Move]]:
    out = []
    for line in matrix.strip().splitlines():
        row, *cells = line.split()
        assert len(cells) == len(columns), row
        out.extend((row, col, CODES[c]) for col, c in zip(columns, cells, strict=True))
    return out


def test_matrices_cover_every_state() -> None:
    assert {r for r, _, _ in _pairs(ORDER_MATRIX, ORDER_COLUMNS)} == {s.value for s in OrderStatus}
    assert set(ORDER_COLUMNS) == {s.value for s in OrderStatus}
    assert {r for r, _, _ in _pairs(COURIER_MATRIX, COURIER_COLUMNS)} == {
        s.value for s in CourierStatus
    }
    assert set(COURIER_COLUMNS) == {s.value for s in CourierStatus}


@pytest.mark.parametrize(("current", "target", "expected"), _pairs(ORDER_MATRIX, ORDER_COLUMNS))
def test_order_move(current: str, target: str, expected: Move) -> None:
    assert classify_order_move(OrderStatus(current), OrderStatus(target)) is expected


@pytest.mark.parametrize(("current", "target", "expected"), _pairs(COURIER_MATRIX, COURIER_COLUMNS))
def test_courier_move(current: str, target: str, expected: Move) -> None:
    assert classify_courier_move(CourierStatus(current), CourierStatus(target)) is expected
