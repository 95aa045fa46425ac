"""Attempt ids are made by the delivery worker itself (cheaper than python-ulid); they must
keep new_id("att_")'s exact shape: ``att_`` + a lowercase ULID with the current time."""

from __future__ import annotations

import re
import time

from ulid import ULID

from ordercast.delivery.worker import attempt_id
from ordercast.services.common import new_id


def test_attempt_id_is_a_ulid_like_new_id() -> None:
    before = time.time()
    ids = [attempt_id() for _ in range(1000)]
    after = time.time()
    reference = new_id("att_")
    shape = re.compile(r"att_[0-7][0-9abcdefghjkmnpqrstvwxyz]{25}")
    assert shape.fullmatch(reference)
    assert all(shape.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    for i in ids[::100]:
        parsed = ULID.from_str(i[4:].upper())
        assert str(parsed).lower() == i[4:]
        assert before - 0.002 <= parsed.timestamp <= after + 0.002
