"""The POS flow rules: phases, callbacks, fire (at most once), timeouts, order events, timers."""

from __future__ import annotations

from typing import Any

import pytest

from ordercast.domain import decide as d
from ordercast.domain import pos_flow as pf
from ordercast.domain.events import Decision, EventRecord, NewEvent
from ordercast.domain.lifecycle import Move
from ordercast.domain.order import Order, evolve
from ordercast.errors import InvalidTransition, ValidationError, WrongPhase

T0 = "2026-11-23T10:00:00.000000Z"
T1 = "2026-11-23T10:00:05.000000Z"


def make_order(
    status: str = "draft", pos_flow: bool = True, fired_at: str | None = None, **kw: Any
) -> Order:
    order = Order(
        id="o1",
        tenant_id="t1",
        location_id="l1",
        status=status,
        version=1,
        type="pickup",
        created_at=T0,
        updated_at=T0,
        total=1000,
        **kw,
    )
    phase = pf.phase_of(status, fired_at is not None).value if pos_flow else None
    order.pos = pf.PosState(flow=pos_flow, phase=phase, fired_at=fired_at)
    return order


def run(order: Order, cmd: d.Command) -> tuple[Order, Decision]:
    decision = d.decide(order, cmd)
    for e in decision.events:
        order = evolve(order, e, T1)
    return order, decision


def records(order: Order, events: list[NewEvent], at: str = T1) -> list[EventRecord]:
    return [
        EventRecord("e", order.id, i, e.type, order.status, at, at, {}, e.data)
        for i, e in enumerate(events)
    ]


def price(status: str = "PRICED", **kw: Any) -> pf.PosCallback:
    return pf.PosCallback(pf.Callback.PRICE, status, T1, **kw)


def commit(status: str = "COMMITTED", **kw: Any) -> pf.PosCallback:
    return pf.PosCallback(pf.Callback.COMMIT, status, T1, **kw)


def fire_cb(status: str = "PREPARING", **kw: Any) -> pf.PosCallback:
    return pf.PosCallback(pf.Callback.FIRE, status, T1, **kw)


MENU = [{"code": "menu", "message": "Whopper unavailable"}]


@pytest.mark.parametrize(
    ("status", "fired", "phase"),
    [
        ("draft", False, "price"),
        ("priced", False, "commit"),
        ("submitted", False, "commit"),
        ("accepted", False, "held"),
        ("held", False, "held"),
        ("held", True, "fire"),
        ("accepted", True, "fire"),
        ("preparing", True, "kitchen"),
        ("ready", False, "kitchen"),
        ("completed", True, "closed"),
        ("failed", False, "closed"),
    ],
)
def test_phase_of(status: str, fired: bool, phase: str) -> None:
    assert pf.phase_of(status, fired).value == phase


def test_happy_path_price_commit_now() -> None:
    order = make_order(fire_order_in_seconds=0)
    order, dec = run(order, price(total=1234))
    assert [e.type for e in dec.events] == ["order.priced", "order.submitted"]
    assert order.status == "submitted" and order.total == 1234 and order.pos_phase == "commit"
    assert order.pos_callbacks == {"price": "PRICED"}
    order, dec = run(order, commit())
    assert [e.type for e in dec.events] == ["order.accepted", "order.fire_requested"]
    assert dec.events[1].data == {"by": "timer", "fire_order_in_seconds": 0}
    assert order.status == "accepted" and order.pos_phase == "fire" and order.fired_by == "timer"
    order, dec = run(order, fire_cb())
    assert [e.type for e in dec.events] == ["order.preparing"]
    assert order.pos_phase == "kitchen"


def test_commit_with_delay_holds_with_fire_time() -> None:
    order = make_order("submitted", fire_order_in_seconds=90)
    order, dec = run(order, commit())
    assert [e.type for e in dec.events] == ["order.accepted", "order.held"]
    assert dec.events[1].data["fire_at"] == "2026-11-23T10:01:35.000000Z"
    assert order.status == "held" and order.fire_at == "2026-11-23T10:01:35.000000Z"
    assert order.pos_phase == "held"


def test_commit_null_holds_until_asked() -> None:
    order, dec = run(make_order("submitted"), commit())
    assert dec.events[1].type == "order.held" and dec.events[1].data["fire_at"] is None
    assert order.pos_phase == "held"
    order, dec = run(order, pf.RequestFire(by="channel"))
    assert [e.type for e in dec.events] == ["order.fire_requested"]
    assert order.fired_by == "channel" and order.pos_phase == "fire"


def test_fire_at_most_once() -> None:
    order, _ = run(make_order("held"), pf.RequestFire(by="app"))
    for by in ("app", "channel", "timer"):
        again, dec = run(order, pf.RequestFire(by=by))
        assert dec.events == [] and not dec.applied and "already fired" in (dec.detail or "")
        assert again.version == order.version


def test_fire_before_commit_is_wrong_phase_for_apps_noop_for_timer() -> None:
    with pytest.raises(WrongPhase) as info:
        d.decide(make_order("submitted"), pf.RequestFire(by="channel"))
    assert info.value.fields["phase"] == "commit"
    assert "committed" in info.value.detail
    assert d.decide(make_order("submitted"), pf.RequestFire(by="timer")).events == []
    with pytest.raises(WrongPhase):
        d.decide(make_order("cancelled"), pf.RequestFire(by="app"))
    assert d.decide(make_order("preparing"), pf.RequestFire(by="app")).events == []


def test_fire_outside_the_flow() -> None:
    with pytest.raises(WrongPhase) as info:
        d.decide(make_order("held", pos_flow=False), pf.RequestFire(by="app"))
    assert info.value.fields["phase"] is None
    assert d.decide(make_order("held", pos_flow=False), pf.RequestFire(by="timer")).events == []


@pytest.mark.parametrize(
    ("cmd", "status", "target"),
    [
        (price("ERROR", errors=MENU), "draft", "failed"),
        (commit("ERROR", errors=MENU), "submitted", "rejected"),
        (commit("ERROR", errors=[{"code": "STORE", "message": "closed"}]), "submitted", "rejected"),
        (commit("ERROR", errors=[{"code": "TIMEOUT", "message": "x"}]), "submitted", "failed"),
        (commit("ERROR", errors=[{"code": "UNKNOWN", "message": "x"}]), "submitted", "failed"),
    ],
)
def test_error_callbacks(cmd: pf.PosCallback, status: str, target: str) -> None:
    order, _ = run(make_order(status), cmd)
    assert order.status == target
    assert order.errors[0]["code"] == (cmd.errors or [])[0]["code"].upper()
    assert order.rejection_code == order.errors[0]["code"]
    assert order.pos_phase == "closed"


def test_fire_error_fails() -> None:
    order, _ = run(make_order("held"), pf.RequestFire(by="app"))
    order, _ = run(order, fire_cb("ERROR", errors=[{"code": "UNKNOWN", "message": "printer"}]))
    assert order.status == "failed" and order.errors == [{"code": "UNKNOWN", "message": "printer"}]


def test_repeated_callback_is_a_noop_and_a_different_answer_is_wrong_phase() -> None:
    order, _ = run(make_order(), price())
    _, dec = run(order, price())
    assert dec.events == [] and dec.outcome is Move.DUPLICATE
    with pytest.raises(WrongPhase):
        d.decide(order, price("ERROR", errors=MENU))
    failed, _ = run(make_order(), price("ERROR", errors=MENU))
    assert d.decide(failed, price("ERROR", errors=MENU)).events == []


@pytest.mark.parametrize(
    ("status", "cmd", "phase"),
    [
        ("draft", commit(), "price"),
        ("draft", fire_cb(), "price"),
        ("submitted", price(), "commit"),
        ("held", fire_cb(), "held"),
        ("failed", price(), "closed"),
    ],
)
def test_callback_in_wrong_phase(status: str, cmd: pf.PosCallback, phase: str) -> None:
    with pytest.raises(WrongPhase) as info:
        d.decide(make_order(status), cmd)
    assert info.value.fields == {"phase": phase, "order_status": status}
    assert f"phase '{phase}'" in info.value.detail


def test_callback_validation() -> None:
    with pytest.raises(ValidationError):
        d.decide(make_order(), price("COMMITTED"))
    with pytest.raises(ValidationError):
        d.decide(make_order(), price("ERROR"))  # errors are required
    with pytest.raises(ValidationError):
        d.decide(make_order(), price("ERROR", errors=[{"code": "OOPS", "message": ""}]))
    with pytest.raises(ValidationError):
        d.decide(make_order(), price("PRICED", errors=MENU))
    with pytest.raises(ValidationError):
        d.decide(make_order("submitted"), commit(total=5))
    with pytest.raises(WrongPhase):
        d.decide(make_order(pos_flow=False), price())


@pytest.mark.parametrize(
    ("callback", "status", "fired"),
    [("price", "draft", False), ("commit", "submitted", False), ("fire", "held", True)],
)
def test_timeouts_fail_a_waiting_order(callback: str, status: str, fired: bool) -> None:
    order = make_order(status, fired_at=T0 if fired else None)
    order, _ = run(order, pf.PosTimeout(pf.Callback(callback), 30))
    assert order.status == "failed"
    assert order.errors == [
        {"code": "TIMEOUT", "message": f"the POS did not answer the {callback} webhook within 30 s"}
    ]
    assert order.rejection_code == "TIMEOUT"


def test_timeout_after_the_answer_is_a_noop() -> None:
    order, _ = run(make_order(), price())
    assert d.decide(order, pf.PosTimeout(pf.Callback.PRICE, 30)).events == []
    assert d.decide(make_order("held"), pf.PosTimeout(pf.Callback.FIRE, 30)).events == []


@pytest.mark.parametrize(
    ("status", "pos_status", "expected", "outcome"),
    [
        ("preparing", "PREPARED", "ready", Move.APPLY),
        ("ready", "DONE", "completed", Move.APPLY),
        ("held", "PREPARING", "preparing", Move.APPLY),
        ("preparing", "CANCELED", "cancelled", Move.APPLY),
        ("preparing", "ERROR", "failed", Move.APPLY),
        ("ready", "PREPARING", "ready", Move.STALE),
        ("ready", "PREPARED", "ready", Move.DUPLICATE),
        ("preparing", "COMMITTED", "preparing", Move.DUPLICATE),
        ("submitted", "COMMITTED", "submitted", Move.DUPLICATE),
    ],
)
def test_order_events(status: str, pos_status: str, expected: str, outcome: Move) -> None:
    order, dec = run(make_order(status), pf.PosOrderEvent(pos_status))
    assert order.status == expected and dec.outcome is outcome
    if outcome is Move.STALE:
        assert [e.type for e in dec.events] == ["order.stale_update"] and not dec.applied


def test_order_event_details() -> None:
    order, _ = run(make_order("ready"), pf.PosOrderEvent("DONE"))
    assert order.completed_how == "closed"
    order, _ = run(make_order("ready"), pf.PosOrderEvent("canceled"))
    assert order.cancellation == {"reason": "pos_canceled", "by": "venue"}
    with pytest.raises(ValidationError):
        d.decide(make_order("ready"), pf.PosOrderEvent("EATEN"))
    with pytest.raises(InvalidTransition):
        d.decide(make_order("completed"), pf.PosOrderEvent("CANCELED"))


# -- timers ------------------------------------------------------------------------------


def test_plan_creation_schedules_the_price_deadline() -> None:
    order = make_order()
    created = [NewEvent("order.created", {"status": "draft"})]
    plan = pf.plan_timers(order, records(order, created, T0), 30)
    assert plan.schedule == {pf.TimerKind.PRICE_DEADLINE: "2026-11-23T10:00:30.000000Z"}
    assert plan.cancel == frozenset(pf.TimerKind) - {pf.TimerKind.PRICE_DEADLINE}


def test_plan_created_submitted_schedules_the_commit_deadline() -> None:
    order = make_order("submitted")
    created = [NewEvent("order.created", {"status": "submitted"})]
    plan = pf.plan_timers(order, records(order, created, T0), 2.5)
    assert plan.schedule == {pf.TimerKind.COMMIT_DEADLINE: "2026-11-23T10:00:02.500000Z"}


def test_plan_through_the_flow() -> None:
    order = make_order(fire_order_in_seconds=60)
    after, dec = run(order, price())
    plan = pf.plan_timers(after, records(after, dec.events), 30)
    assert plan.schedule == {pf.TimerKind.COMMIT_DEADLINE: "2026-11-23T10:00:35.000000Z"}
    assert pf.TimerKind.PRICE_DEADLINE in plan.cancel
    after, dec = run(after, commit())
    plan = pf.plan_timers(after, records(after, dec.events), 30)
    assert plan.schedule == {pf.TimerKind.FIRE: "2026-11-23T10:01:05.000000Z"}
    assert pf.TimerKind.COMMIT_DEADLINE in plan.cancel
    after, dec = run(after, pf.RequestFire(by="channel"))
    plan = pf.plan_timers(after, records(after, dec.events), 30)
    assert plan.schedule == {pf.TimerKind.FIRE_DEADLINE: "2026-11-23T10:00:35.000000Z"}
    assert pf.TimerKind.FIRE in plan.cancel  # the explicit fire wins over the pending timer
    after, dec = run(after, fire_cb())
    plan = pf.plan_timers(after, records(after, dec.events), 30)
    assert plan.schedule == {} and plan.cancel == frozenset(pf.TimerKind)


def test_plan_failure_cancels_everything_and_no_flow_plans_nothing() -> None:
    order, dec = run(make_order("held"), pf.PosOrderEvent("CANCELED"))
    assert pf.plan_timers(order, records(order, dec.events), 30).cancel == frozenset(pf.TimerKind)
    plain = make_order("submitted", pos_flow=False)
    created = [NewEvent("order.created", {"status": "submitted"})]
    assert pf.plan_timers(plain, records(plain, created), 30) == pf.TimerPlan({}, frozenset())


def test_command_for_timer() -> None:
    assert pf.command_for_timer(pf.TimerKind.FIRE, 30) == pf.RequestFire(by="timer")
    assert pf.command_for_timer(pf.TimerKind.COMMIT_DEADLINE, 30) == pf.PosTimeout(
        pf.Callback.COMMIT, 30
    )
