"""``new_id`` spells what python-ulid's default generator makes (``str(ULID()).lower()``,
which it replaced): the current millisecond, then 80 bits that are random, or the previous
id's + 1 within the same millisecond (strictly increasing within a process)."""

from __future__ import annotations

import re
import threading
import time

import pytest
from ulid import ULID

from ordercast.services import common
from ordercast.services.common import new_id

SHAPE = re.compile(r"msg_[0-7][0-9abcdefghjkmnpqrstvwxyz]{25}")


def test_new_id_is_a_lowercase_ulid_of_now() -> None:
    before = time.time()
    ids = [new_id("msg_") for _ in range(5000)]
    after = time.time()
    assert all(SHAPE.fullmatch(i) for i in ids)
    for i in ids[::250]:
        parsed = ULID.from_str(i[4:].upper())
        assert str(parsed).lower() == i[4:]
        assert before - 0.002 <= parsed.timestamp <= after + 0.002
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_same_millisecond_ids_count_up_and_overflow_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = common._UlidClock()
    monkeypatch.setattr(common, "_ULIDS", clock)
    monkeypatch.setattr(common.time, "time_ns", lambda: 1_700_000_000_123_456_789)
    a, b = ULID.from_str(new_id().upper()), ULID.from_str(new_id().upper())
    assert a.milliseconds == b.milliseconds == 1_700_000_000_123
    assert int(b) == int(a) + 1
    clock._random = (1 << 80) - 1
    with pytest.raises(ValueError, match="exhausted"):
        new_id()


def test_ids_from_many_threads_are_unique() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def make(n: int) -> None:
        out[n].extend(new_id() for _ in range(2000))

    threads = [threading.Thread(target=make, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in out for i in ids]
    assert len(set(every)) == len(every)
    assert all(ids == sorted(ids) for ids in out)
