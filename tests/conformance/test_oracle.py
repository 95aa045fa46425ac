"""The oracle itself can fail: synthetic sessions with a gap, a duplicate, a message from an
order the subscriber may not see, a late start and a short end are each reported."""

from __future__ import annotations

from .oracle import check_sessions
from .wire import Msg, Session

EXPECTED = {"o1": [(1, "a"), (2, "b"), (3, "c"), (4, "d")], "o2": [(1, "a"), (2, "b")]}


def session(*msgs: tuple[str, int, str], final: bool = True, **kw: object) -> Session:
    s = Session(final=final, **kw)  # type: ignore[arg-type]
    s.msgs = [Msg(o, seq, name) for o, seq, name in msgs]
    return s


def run(s: Session, state_first: bool = False) -> list[str]:
    return check_sessions("sub", [s], EXPECTED, state_first=state_first)


def test_complete_in_order_passes() -> None:
    full = [
        ("o1", 1, "a"),
        ("o2", 1, "a"),
        ("o1", 2, "b"),
        ("o1", 3, "c"),
        ("o2", 2, "b"),
        ("o1", 4, "d"),
    ]
    assert run(session(*full)) == []


def test_gap_duplicate_foreign_late_and_short_are_reported() -> None:
    gap = run(
        session(("o1", 1, "a"), ("o1", 3, "c"), ("o1", 4, "d"), ("o2", 1, "a"), ("o2", 2, "b"))
    )
    assert len(gap) == 1 and "gap" in gap[0] and "(2, 'b')" in gap[0]
    dup = run(
        session(
            ("o1", 1, "a"),
            ("o1", 2, "b"),
            ("o1", 2, "b"),
            ("o1", 3, "c"),
            ("o1", 4, "d"),
            ("o2", 1, "a"),
            ("o2", 2, "b"),
        )
    )
    assert len(dup) == 1 and "duplicate or out of order" in dup[0]
    foreign = run(
        session(
            ("o1", 1, "a"),
            ("o1", 2, "b"),
            ("o1", 3, "c"),
            ("o1", 4, "d"),
            ("o2", 1, "a"),
            ("o2", 2, "b"),
            ("o3", 1, "a"),
        )
    )
    assert len(foreign) == 1 and "may not see" in foreign[0]
    late = run(
        session(("o1", 2, "b"), ("o1", 3, "c"), ("o1", 4, "d"), ("o2", 1, "a"), ("o2", 2, "b"))
    )
    assert len(late) == 1 and "first message" in late[0]
    short = run(session(("o1", 1, "a"), ("o1", 2, "b"), ("o2", 1, "a"), ("o2", 2, "b")))
    assert len(short) == 1 and "missing [(3, 'c'), (4, 'd')]" in short[0]


def test_floor_resume_and_state_message() -> None:
    # Subscribed when o1 was at seq 2 and o2 at 2: o1 from 3 on is owed, o2 nothing.
    assert run(session(("o1", 3, "c"), ("o1", 4, "d"), floor={"o1": 2, "o2": 2})) == []
    assert run(session(("o1", 4, "d"), floor={"o1": 2, "o2": 2}))  # seq 3 lost
    # x-since-seq=1 must restart exactly at seq 2.
    assert (
        run(
            session(
                ("o1", 2, "b"), ("o1", 3, "c"), ("o1", 4, "d"), since={"o1": 1}, floor={"o2": 2}
            )
        )
        == []
    )
    assert run(session(("o1", 3, "c"), ("o1", 4, "d"), since={"o1": 1}, floor={"o2": 2}))
    # A state message (snapshot / Pusher last state) at seq 2, then the rest without a gap.
    s = session(("o1", 2, "b"), ("o1", 3, "c"), ("o1", 4, "d"), floor={"o1": 2, "o2": 2})
    s.msgs[0].marker = True
    assert run(s) == []
    s = session(("o1", 2, "b"), ("o1", 4, "d"), floor={"o1": 2, "o2": 2})
    s.msgs[0].marker = True
    assert run(s)
    assert (
        run(
            session(("o1", 2, "b"), ("o1", 3, "c"), ("o1", 4, "d"), floor={"o1": 2, "o2": 2}),
            state_first=True,
        )
        == []
    )
