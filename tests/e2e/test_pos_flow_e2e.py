"""The POS flow end to end: a real ``ordercast run`` process and a simulated POS.

The POS is an aiohttp.web server on loopback. It receives ordercast's signed webhooks
(verified with the ``standardwebhooks`` library), acknowledges them, and answers each
PRICE/COMMIT/FIRE_ORDER by calling back over HTTP, as a POS app (HTTP Basic), on the
``callbackUrl`` it was given — following a per-order script keyed by the order's
``external_order_ref``. No timing assertions: every wait is bounded polling.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.pos import Script, Setup, running
from support.webhooks import wait_for


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("pos")


@pytest.fixture
async def oc(tmp_path: Path) -> AsyncIterator[Setup]:
    async with running(tmp_path) as setup:
        yield setup


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


# -- the flow --------------------------------------------------------------------------


async def test_happy_path_price_commit_fire_and_order_events(oc: Setup) -> None:
    order = await oc.order({"price": ("PRICED", 1500)}, fire_order_in_seconds=0)
    assert order["status"] == "draft" and order["pos_flow"] and order["pos_phase"] == "price"
    done = await oc.wait_status(order["id"], "preparing")
    assert done["total"] == 1500 and done["pos_phase"] == "kitchen" and done["fired_by"] == "timer"
    oid = order["id"]
    requests = [
        r["body"]["eventType"] for r in oc.pos.of(oid) if r["body"]["eventType"] != "ORDER_EVENT"
    ]
    assert requests == ["PRICE_ORDER", "COMMIT_ORDER", "FIRE_ORDER"]
    [commit] = oc.pos.of(oid, "COMMIT_ORDER")
    assert commit["body"]["fireOrderInSeconds"] == 0
    assert commit["body"]["callbackUrl"] == f"{oc.oc.base}/v1/pos/orders/{oid}/commit"
    assert commit["body"]["order"]["total"] == 1500
    assert [status for _, status, _ in oc.pos.callbacks] == [200, 200, 200]

    # The POS reports the rest on the order event endpoint.
    url = f"/v1/pos/orders/{oid}/events"
    r = await oc.http.post(url, headers=oc.pos_auth, json={"status": "COMMITTED"})
    assert r.status_code == 200 and r.json()["applied"] is False  # repeats are ignored
    r = await oc.http.post(url, headers=oc.pos_auth, json={"status": "PREPARED"})
    assert r.status_code == 200 and r.json()["order"]["status"] == "ready"
    r = await oc.http.post(url, headers=oc.pos_auth, json={"status": "PREPARING"})
    assert r.status_code == 200 and r.json()["applied"] is False  # not forward: disregarded
    assert r.json()["outcome"] == "stale"
    r = await oc.http.post(url, headers=oc.pos_auth, json={"status": "DONE"})
    assert r.json()["order"]["status"] == "completed"

    assert types(await oc.events(oid)) == [
        "order.created",
        "order.priced",
        "order.submitted",
        "order.accepted",
        "order.fire_requested",
        "order.preparing",
        "order.ready",
        "order.stale_update",
        "order.completed",
    ]
    # Every lifecycle status also went to the POS as an RBI ORDER_EVENT ...
    await wait_for(
        lambda: "DONE" in [r["body"].get("status") for r in oc.pos.of(oid, "ORDER_EVENT")],
        what="the DONE order event",
    )
    statuses = [r["body"]["status"] for r in oc.pos.of(oid, "ORDER_EVENT")]
    for status in ("CREATED", "PRICED", "COMMITTED", "PREPARING", "PREPARED", "DONE"):
        assert status in statuses
    # ... and to the channel in its own dialect.
    await wait_for(
        lambda: any(
            m["type"] == "order.completed" and m["data"]["order_id"] == oid
            for m in oc.channel.received
        ),
        what="the channel's order.completed",
    )


@pytest.mark.parametrize(
    ("script", "status", "code"),
    [
        ({"price": ("ERROR", "MENU", "Whopper is unavailable")}, "failed", "MENU"),
        ({"commit": ("ERROR", "STORE", "store closed")}, "rejected", "STORE"),
        ({"commit": ("ERROR", "UNKNOWN", "TERMINAL UPDATE IN PROGRESS")}, "failed", "UNKNOWN"),
        ({"fire": ("ERROR", "UNKNOWN", "printer jammed")}, "failed", "UNKNOWN"),
    ],
    ids=["price-menu", "commit-store", "commit-unknown", "fire-unknown"],
)
async def test_error_paths(oc: Setup, script: Script, status: str, code: str) -> None:
    order = await oc.order(script, fire_order_in_seconds=0)
    final = await oc.wait_status(order["id"], status)
    assert final["errors"][0]["code"] == code
    assert final["pos_phase"] == "closed"
    # The POS sees ERROR on its order event webhook; nothing further is requested.
    await wait_for(
        lambda: "ERROR" in [r["body"].get("status") for r in oc.pos.of(order["id"], "ORDER_EVENT")],
        what="the ERROR order event",
    )
    [error_event] = [
        r["body"] for r in oc.pos.of(order["id"], "ORDER_EVENT") if r["body"]["status"] == "ERROR"
    ]
    assert error_event["errors"][0]["code"] == code
    sent = {r["body"]["eventType"] for r in oc.pos.of(order["id"])}
    last = {"price": "PRICE_ORDER", "commit": "COMMIT_ORDER", "fire": "FIRE_ORDER"}[
        next(iter(script))
    ]
    after = {"PRICE_ORDER": {"COMMIT_ORDER", "FIRE_ORDER"}, "COMMIT_ORDER": {"FIRE_ORDER"}}
    assert last in sent and not (sent & after.get(last, set()))


async def test_fire_takes_precedence_over_a_long_fire_time(oc: Setup) -> None:
    order = await oc.order(fire_order_in_seconds=100_000)
    held = await oc.wait_status(order["id"], "held")
    assert held["fire_at"] is not None and held["pos_phase"] == "held"
    assert not oc.pos.of(order["id"], "FIRE_ORDER")
    r = await oc.http.post(f"/v1/orders/{order['id']}/fire", headers=oc.channel_auth)
    assert r.status_code == 200 and r.json()["applied"] is True
    assert types(r.json()["events"]) == ["order.fire_requested"]
    await oc.wait_status(order["id"], "preparing")
    # At most once: asking again changes nothing.
    r = await oc.http.post(f"/v1/orders/{order['id']}/fire", headers=oc.channel_auth)
    assert r.status_code == 200 and r.json()["applied"] is False
    assert oc.pos.distinct(order["id"], "FIRE_ORDER") == 1
    [fire] = oc.pos.of(order["id"], "FIRE_ORDER")
    assert fire["body"]["firedBy"] == "channel"


async def test_null_holds_until_fired(oc: Setup) -> None:
    order = await oc.order()  # fire_order_in_seconds omitted: null, hold until fired
    held = await oc.wait_status(order["id"], "held")
    assert held["fire_at"] is None
    [commit] = oc.pos.of(order["id"], "COMMIT_ORDER")
    assert "fireOrderInSeconds" in commit["body"] and commit["body"]["fireOrderInSeconds"] is None
    r = await oc.http.post(f"/v1/orders/{order['id']}/fire", headers=oc.channel_auth)
    assert r.status_code == 200
    done = await oc.wait_status(order["id"], "preparing")
    assert done["fired_by"] == "channel"


async def test_fire_after_n_seconds(oc: Setup) -> None:
    order = await oc.order(fire_order_in_seconds=1)
    done = await oc.wait_status(order["id"], "preparing")
    assert done["fired_by"] == "timer" and done["fired_at"] >= done["fire_at"]
    assert oc.pos.distinct(order["id"], "FIRE_ORDER") == 1


async def test_callbacks_are_authenticated_idempotent_and_phase_checked(oc: Setup) -> None:
    order = await oc.order({"price": "silent"})
    oid = order["id"]
    await wait_for(lambda: bool(oc.pos.of(oid, "PRICE_ORDER")), what="the price webhook")
    url = f"/v1/pos/orders/{oid}"
    # Only a POS app may call back: another app of the location is forbidden.
    r = await oc.http.post(f"{url}/price", headers=oc.channel_auth, json={"status": "PRICED"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await oc.http.post(f"{url}/price", json={"status": "PRICED"})
    assert r.status_code == 401
    # A callback for a later phase: 409 wrong_phase, saying where the order is.
    r = await oc.http.post(f"{url}/commit", headers=oc.pos_auth, json={"status": "COMMITTED"})
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "wrong_phase" and problem["phase"] == "price"
    assert "phase 'price'" in problem["detail"]
    # Bad input: 422.
    r = await oc.http.post(f"{url}/price", headers=oc.pos_auth, json={"status": "ERROR"})
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    # The real answer, then the same answer again: a no-op answered 200.
    body = {"status": "PRICED", "total": 1398}
    first = await oc.http.post(f"{url}/price", headers=oc.pos_auth, json=body)
    assert first.status_code == 200 and first.json()["applied"] is True
    assert first.json()["order"]["status"] == "submitted"
    again = await oc.http.post(f"{url}/price", headers=oc.pos_auth, json=body)
    assert again.status_code == 200 and again.json()["applied"] is False
    assert again.json()["events"] == []
    # A different answer to an answered callback is the wrong phase.
    r = await oc.http.post(
        f"{url}/price",
        headers=oc.pos_auth,
        json={"status": "ERROR", "errors": [{"code": "MENU", "message": "x"}]},
    )
    assert r.status_code == 409 and r.json()["phase"] in ("commit", "held", "kitchen")
    # An unknown order is 404 for the POS too.
    r = await oc.http.post(
        "/v1/pos/orders/ord_nope/price", headers=oc.pos_auth, json={"status": "PRICED"}
    )
    assert r.status_code == 404


async def test_fire_before_commit_is_wrong_phase(oc: Setup) -> None:
    order = await oc.order({"commit": "silent"})
    await oc.wait_status(order["id"], "submitted")
    r = await oc.http.post(f"/v1/orders/{order['id']}/fire", headers=oc.channel_auth)
    assert r.status_code == 409 and r.json()["code"] == "wrong_phase"
    assert r.json()["phase"] == "commit"


async def test_orders_elsewhere_are_not_in_the_flow(oc: Setup) -> None:
    # An order created at an explicit later status is not priced or committed by the POS.
    order = await oc.order(status="accepted")
    assert order["pos_flow"] is False and order["status"] == "accepted"
    r = await oc.http.post(f"/v1/orders/{order['id']}/fire", headers=oc.channel_auth)
    assert r.status_code == 409 and r.json()["phase"] is None


# -- deadlines and restarts --------------------------------------------------------------


async def test_timeout_fails_the_order_and_the_channel_is_told(tmp_path: Path) -> None:
    async with running(tmp_path, ORDERCAST_POS_CALLBACK_TIMEOUT="1") as oc:
        order = await oc.order({"commit": "silent"})
        failed = await oc.wait_status(order["id"], "failed")
        assert failed["errors"] == [
            {"code": "TIMEOUT", "message": "the POS did not answer the commit webhook within 1 s"}
        ]
        assert failed["rejection_code"] == "TIMEOUT"
        [event] = [e for e in await oc.events(order["id"]) if e["type"] == "order.failed"]
        assert event["actor"] == {"type": "system", "kind": "timer"}
        # The channel learns it through its webhook, the POS through its ORDER_EVENT.
        await wait_for(
            lambda: any(
                m["type"] == "order.failed" and m["data"]["order_id"] == order["id"]
                for m in oc.channel.received
            ),
            what="the channel's order.failed",
        )
        await wait_for(
            lambda: (
                "ERROR" in [r["body"].get("status") for r in oc.pos.of(order["id"], "ORDER_EVENT")]
            ),
            what="the POS's ERROR order event",
        )
        # A late callback is refused: the order is closed.
        r = await oc.http.post(
            f"/v1/pos/orders/{order['id']}/commit",
            headers=oc.pos_auth,
            json={"status": "COMMITTED"},
        )
        assert r.status_code == 409 and r.json()["phase"] == "closed"


async def test_restart_while_held_fires_exactly_once(tmp_path: Path, database_url: str) -> None:
    """On SQLite and on PostgreSQL (``database_url`` is parametrized by conftest)."""
    async with running(tmp_path, database_url) as oc:
        order = await oc.order(fire_order_in_seconds=3)
        oid = order["id"]
        held = await oc.wait_status(oid, "held")
        oc.oc.kill()  # SIGKILL: no shutdown of any kind
        assert not oc.pos.of(oid, "FIRE_ORDER"), "fired before the crash; raise the delay"
        fire_at = datetime_of(held["fire_at"])
        await wait_for(lambda: time.time() > fire_at + 0.5, 30, "the fire time to pass")
        restarted_at = time.time()
        oc.oc.start()  # same database, same ports
        done = await oc.wait_status(oid, "preparing")
        assert datetime_of(done["fired_at"]) >= restarted_at  # fired on start-up
        assert done["fired_by"] == "timer"
        # Restart once more: nothing fires again.
        oc.oc.stop()
        oc.oc.start()
        r = await oc.http.post(f"/v1/orders/{oid}/fire", headers=oc.channel_auth)
        assert r.status_code == 200 and r.json()["applied"] is False
        events = types(await oc.events(oid))
        assert events.count("order.fire_requested") == 1
        assert oc.pos.distinct(oid, "FIRE_ORDER") == 1


def datetime_of(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
