"""POS flow timers in storage, on SQLite and PostgreSQL: written in the order's transaction,
cancelled when the phase moves on, claimed once under concurrency, and a fire that runs
twice (or from two runners) fires once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ordercast.delivery.timers import TimerRunner
from ordercast.domain.pos_flow import plan_timers
from ordercast.ports import Timers
from ordercast.runtime import Runtime
from ordercast.services.common import new_id
from support.world import World, basic


async def pos_location(w: World) -> dict[str, str]:
    pos = await w.new_app("pos")
    r = await w.http.post(
        f"/v1/apps/{pos['id']}/endpoints",
        headers=w.admin,
        json={"url": "https://pos.example.com/rbi", "dialect": "rbi"},
    )
    assert r.status_code == 201, r.text
    return basic(pos["key"], pos["secret"])


def timers_of(rt: Runtime) -> Timers:
    assert rt.pos is not None
    return rt.pos.timers


def later(rt: Runtime, seconds: float) -> Timers:
    """The same timers table seen from ``seconds`` in the future."""
    return rt.store.timers(
        lambda o, e: plan_timers(o, e, rt.settings.pos_callback_timeout),
        new_id=new_id,
        clock=lambda: time.time() + seconds,
    )


def live(rows: list[dict[str, Any]]) -> dict[str, bool]:
    return {r["kind"]: not r["done"] for r in rows}


async def test_timers_follow_the_phases(any_world: World) -> None:
    w, rt = any_world, any_world.runtime
    pos = await pos_location(w)
    timers = timers_of(rt)
    open_before = await timers.count_pending()  # the whole table (PostgreSQL's is shared)
    order = await w.order(fire_order_in_seconds=600)
    assert order["status"] == "draft" and order["pos_flow"] is True
    oid = order["id"]
    assert live(await timers.pending(oid)) == {"price_deadline": True}
    assert await timers.count_pending() == open_before + 1
    r = await w.http.post(f"/v1/pos/orders/{oid}/price", headers=pos, json={"status": "PRICED"})
    assert r.status_code == 200, r.text
    assert live(await timers.pending(oid)) == {"price_deadline": False, "commit_deadline": True}
    r = await w.http.post(f"/v1/pos/orders/{oid}/commit", headers=pos, json={"status": "COMMITTED"})
    assert r.json()["order"]["status"] == "held"
    rows = await timers.pending(oid)
    assert live(rows) == {"price_deadline": False, "commit_deadline": False, "fire": True}
    assert await timers.count_pending() == open_before + 1  # the deadlines done, the fire set
    [fire] = [x for x in rows if x["kind"] == "fire"]
    assert fire["due_at"] > time.time() + 500
    # Nothing is due now.
    assert await timers.claim_due(10, 30) == []
    # Ten minutes later, two runners race for the fire timer: the order fires once.
    assert rt.pos is not None
    runners = [TimerRunner(later(rt, 601), rt.pos) for _ in range(2)]
    # Other tests' timers share the PostgreSQL database and are due too: run batches until
    # this order's fire timer is done (bounded), as a live runner would.
    for _ in range(100):
        ran = await asyncio.gather(*(r.run_due() for r in runners))
        if not live(await timers.pending(oid))["fire"] or sum(ran) == 0:
            break
    got = (await w.http.get(f"/v1/orders/{oid}", headers=w.auth)).json()
    assert got["fired_by"] == "timer"
    rows = await timers.pending(oid)
    assert live(rows)["fire"] is False
    if got["pos_phase"] == "fire":
        # The POS now has its own deadline to answer the fire webhook.
        assert live(rows)["fire_deadline"] is True
    else:
        # The simulated clock is already 571 s past that deadline, so the other runner may
        # have run it in the same pass: then the silent POS failed the order, as it should.
        assert got["status"] == "failed" and got["errors"][0]["code"] == "TIMEOUT"
    # A runner that runs the fire again (a crash before it was marked done) changes nothing.
    again = await rt.pos.run_timer(await _due(rt, oid, "fire"))
    assert again is not None and again.events == [] and not again.applied
    events = (await w.http.get(f"/v1/orders/{oid}/events", headers=w.auth)).json()["events"]
    assert [e["type"] for e in events].count("order.fire_requested") == 1


async def test_deadline_fails_a_silent_pos(any_world: World) -> None:
    w, rt = any_world, any_world.runtime
    await pos_location(w)
    order = await w.order()
    assert rt.pos is not None
    runner = TimerRunner(later(rt, rt.settings.pos_callback_timeout + 1), rt.pos)
    assert await runner.run_due() >= 1
    got = (await w.http.get(f"/v1/orders/{order['id']}", headers=w.auth)).json()
    assert got["status"] == "failed" and got["errors"][0]["code"] == "TIMEOUT"
    assert live(await timers_of(rt).pending(order["id"])) == {"price_deadline": False}


async def test_orders_without_a_pos_endpoint_stay_out_of_the_flow(world: World) -> None:
    await world.new_app("pos")  # a POS app, but no rbi endpoint
    order = await world.order()
    assert order["status"] == "submitted" and order["pos_flow"] is False
    assert order["pos_phase"] is None
    assert await timers_of(world.runtime).pending(order["id"]) == []


async def test_pos_routes_need_a_pos_app_of_the_location(world: World) -> None:
    pos = await pos_location(world)
    order = await world.order()
    url = f"/v1/pos/orders/{order['id']}/price"
    r = await world.http.post(url, headers=world.auth, json={"status": "PRICED"})
    assert r.status_code == 403
    # A POS app of another location of the tenant may not touch the order (403; another
    # tenant's app would get 404).
    other = (
        await world.http.post(
            "/v1/locations",
            headers=world.admin,
            json={"tenant_id": world.tenant_id, "name": "L2", "timezone": "UTC"},
        )
    ).json()
    stranger = await world.new_app("pos", [other["id"]])
    r = await world.http.post(
        url, headers=basic(stranger["key"], stranger["secret"]), json={"status": "PRICED"}
    )
    assert r.status_code == 403
    r = await world.http.post(url, headers=pos, json={"status": "PRICED", "extra": {"x": 1}})
    assert r.status_code == 200  # unknown fields from a POS are ignored
    r = await world.http.post(
        f"/v1/pos/orders/{order['id']}/events", headers=pos, json={"status": "EATEN"}
    )
    assert r.status_code == 422


async def _due(rt: Runtime, order_id: str, kind: str) -> Any:
    from ordercast.ports import DueTimer

    [row] = [r for r in await timers_of(rt).pending(order_id) if r["kind"] == kind]
    return DueTimer(row["id"], order_id, kind, row["due_at"], 2)


async def test_runner_is_woken_by_pos_flow_orders_only(world: World) -> None:
    """The timer runner looks again after a POS-flow order's change (it may have set a timer),
    never after other orders' changes (each look is two queries)."""
    rt = world.runtime
    runner = await rt.start_timers()
    wakes: list[int] = []
    real_wake = runner.wake

    def counting_wake(*args: object) -> None:
        wakes.append(1)
        real_wake(*args)

    runner.wake = counting_wake  # type: ignore[method-assign]
    plain = await world.order()
    assert plain["pos_flow"] is False
    r = await world.http.post(
        f"/v1/orders/{plain['id']}/notes", headers=world.auth, json={"text": "no timers"}
    )
    assert r.status_code == 200, r.text
    assert wakes == []
    await pos_location(world)
    flow = await world.order()
    assert flow["pos_flow"] is True
    assert len(wakes) == 1
    assert live(await timers_of(rt).pending(flow["id"])) == {"price_deadline": True}
