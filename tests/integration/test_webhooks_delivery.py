"""Webhook delivery end to end: real aiohttp receivers on loopback, every signature checked
with the ``standardwebhooks`` library, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from ordercast.runtime import Runtime
from support.webhooks import (
    ADMIN,
    Received,
    Receiver,
    fresh_database_url,
    open_runtime,
    wait_for,
)
from support.world import World, basic, make_world

ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    async for url in fresh_database_url(request.param, tmp_path):
        yield url


@pytest.fixture(params=["commit", "worker"])
def render(request: pytest.FixtureRequest) -> str:
    """ORDERCAST_OUTBOX_RENDER: in the order's transaction, or by the delivery worker."""
    value: str = request.param
    return value


@pytest.fixture
async def rt(db_url: str, render: str) -> AsyncIterator[Runtime]:
    async for runtime in open_runtime(db_url, outbox_render=render):
        await runtime.start_delivery()
        yield runtime


@pytest.fixture
async def w(rt: Runtime) -> AsyncIterator[World]:
    async for world in make_world(rt):
        yield world


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def endpoint(w: World, url: str, app: dict[str, Any] | None = None, **body: Any) -> Any:
    app = app or w.app
    r = await w.http.post(
        f"/v1/apps/{app['id']}/endpoints",
        headers=basic(app["key"], app["secret"]),
        json={"url": url, **body},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_signed_canonical_delivery(w: World, receiver: Receiver) -> None:
    ep = await endpoint(w, receiver.url)
    assert ep["secret"].startswith("whsec_") and ep["dialect"] == "ordercast"
    order = await w.order()
    for to in ("accepted", "preparing", "ready"):
        assert (await w.move(order["id"], to)).status_code == 200
    await wait_for(lambda: len(receiver.received) >= 4, what="4 deliveries")
    receiver.verify_all(ep["secret"])
    bodies = sorted((r.json for r in receiver.received), key=lambda b: b["data"]["seq"])
    assert [b["type"] for b in bodies] == [
        "order.created",
        "order.accepted",
        "order.preparing",
        "order.ready",
    ]
    assert [b["data"]["seq"] for b in bodies] == [1, 2, 3, 4]
    assert [b["data"]["status"] for b in bodies] == ["submitted", "accepted", "preparing", "ready"]
    for b in bodies:
        assert b["data"]["order_id"] == order["id"]
        assert b["data"]["event_id"].startswith("evt_")
        assert b["timestamp"].endswith("Z")
        assert b["data"]["order"]["id"] == order["id"]
    assert len({r.webhook_id for r in receiver.received}) == 4
    # The attempts log, newest first.
    r = await w.http.get(f"/v1/apps/{w.app['id']}/endpoints/{ep['id']}/attempts", headers=w.auth)
    assert r.status_code == 200, r.text
    attempts = r.json()["attempts"]

    async def logged() -> bool:
        r = await w.http.get(
            f"/v1/apps/{w.app['id']}/endpoints/{ep['id']}/attempts", headers=w.auth
        )
        return len(r.json()["attempts"]) == 4

    await wait_for(logged, what="4 attempts logged")
    r = await w.http.get(f"/v1/apps/{w.app['id']}/endpoints/{ep['id']}/attempts", headers=w.auth)
    attempts = r.json()["attempts"]
    assert all(a["status_code"] == 200 and a["outcome"] == "delivered" for a in attempts)
    assert [a["cursor"] for a in attempts] == sorted((a["cursor"] for a in attempts), reverse=True)
    assert attempts[0]["response_body"] == '{"ok": true}'
    assert all(a["latency_ms"] >= 0 for a in attempts)


async def test_rotated_secret_signs_with_both(w: World, receiver: Receiver) -> None:
    ep = await endpoint(w, receiver.url)
    old = ep["secret"]
    r = await w.http.post(
        f"/v1/apps/{w.app['id']}/endpoints/{ep['id']}/secret/rotate",
        headers=w.auth,
        json={"grace_seconds": 3600},
    )
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new != old and new.startswith("whsec_")
    assert len(r.json()["previous_secrets_valid_until"]) == 1
    await w.order()
    await wait_for(lambda: len(receiver.received) >= 1)
    item = receiver.received[0]
    assert len(item.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(item.body, item.headers)  # a receiver not yet switched over
    Webhook(new).verify(item.body, item.headers)  # a receiver already switched over
    # Rotating with no grace drops the old secret at once.
    r = await w.http.post(
        f"/v1/apps/{w.app['id']}/endpoints/{ep['id']}/secret/rotate",
        headers=w.auth,
        json={"grace_seconds": 0},
    )
    newest = r.json()["secret"]
    receiver.received.clear()
    await w.order()
    await wait_for(lambda: len(receiver.received) >= 1)
    item = receiver.received[0]
    # new is still inside its grace period from the second rotation? No: grace 0 drops it.
    assert len(item.headers["webhook-signature"].split(" ")) == 2  # newest + old (1 h grace)
    Webhook(newest).verify(item.body, item.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(new).verify(item.body, item.headers)


async def test_retries_keep_the_webhook_id(w: World, receiver: Receiver) -> None:
    calls: list[str] = []

    def flaky(item: Received) -> web.Response:
        calls.append(item.webhook_id)
        if len(calls) <= 2:
            return web.Response(status=503, text="busy")
        return web.Response(status=204)

    receiver.responder = flaky
    ep = await endpoint(w, receiver.url)
    await w.order()
    await wait_for(lambda: len(receiver.received) == 1, what="delivery after 2 failures")
    assert len(calls) == 3 and len(set(calls)) == 1
    receiver.verify_all(ep["secret"])
    url = f"/v1/apps/{w.app['id']}/endpoints/{ep['id']}/attempts"

    async def three() -> bool:
        return len((await w.http.get(url, headers=w.auth)).json()["attempts"]) == 3

    await wait_for(three)
    attempts = (await w.http.get(url, headers=w.auth)).json()["attempts"]
    assert [a["status_code"] for a in attempts] == [204, 503, 503]
    assert [a["attempt"] for a in attempts] == [3, 2, 1]
    assert attempts[1]["response_body"] == "busy"
    assert attempts[1]["reason"] == "http_503"
    assert {a["message_id"] for a in attempts} == {calls[0]}


async def test_gone_disables_and_replay_sends_what_was_skipped(
    w: World, receiver: Receiver
) -> None:
    receiver.responder = lambda item: web.Response(status=410)
    ep = await endpoint(w, receiver.url)
    base = f"/v1/apps/{w.app['id']}/endpoints/{ep['id']}"
    order = await w.order()

    async def disabled() -> bool:
        return (await w.http.get(base, headers=w.auth)).json()["enabled"] is False

    await wait_for(disabled, what="endpoint disabled by 410")
    view = (await w.http.get(base, headers=w.auth)).json()
    assert "410" in view["disabled_reason"]
    # While disabled, new events are kept (skipped), not dropped (listed once rendered: at
    # once in commit mode, by the worker's next round in worker mode).
    await w.move(order["id"], "accepted")

    async def statuses() -> list[str]:
        msgs = (await w.http.get(f"{base}/messages", headers=w.auth)).json()["messages"]
        return sorted(m["status"] for m in msgs)

    async def both_listed() -> bool:
        return len(await statuses()) == 2

    await wait_for(both_listed, what="both messages listed")
    assert await statuses() == ["failed", "skipped"]
    # The receiver is back: re-enable and replay the order.
    receiver.responder = None
    r = await w.http.patch(base, headers=w.auth, json={"enabled": True})
    assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None
    r = await w.http.post(f"{base}/replay", headers=w.auth, json={"order_id": order["id"]})
    assert r.status_code == 202 and r.json() == {"replayed": 2}
    await wait_for(lambda: len(receiver.received) == 2)
    assert sorted(x.json["data"]["seq"] for x in receiver.received) == [1, 2]
    receiver.verify_all(ep["secret"])


async def test_dead_letter_is_visible_and_replayable(tmp_path: Any) -> None:
    receiver = Receiver()
    await receiver.start()
    receiver.responder = lambda item: web.Response(status=500, text="boom")
    async for rt in open_runtime(f"sqlite:///{tmp_path}/dl.db", webhook_retry_schedule="0.1,0.1"):
        await rt.start_delivery()
        async for w in make_world(rt):
            ep = await endpoint(w, receiver.url)
            base = f"/v1/apps/{w.app['id']}/endpoints/{ep['id']}"
            await w.order()

            async def dead(w: World = w, base: str = base) -> bool:
                r = await w.http.get(f"{base}/messages?status=failed", headers=w.auth)
                return len(r.json()["messages"]) == 1

            await wait_for(dead, what="dead letter")
            msg = (await w.http.get(f"{base}/messages?status=failed", headers=w.auth)).json()[
                "messages"
            ][0]
            assert msg["attempts"] == 3 and "http_500" in msg["last_error"]
            receiver.responder = None
            r = await w.http.post(f"{base}/replay", headers=w.auth, json={"status": ["failed"]})
            assert r.json() == {"replayed": 1}
            await wait_for(lambda: len(receiver.received) == 1)
            assert receiver.received[0].webhook_id == msg["id"]
            receiver.verify_all(ep["secret"])

            # The receiver has the request before the worker records the attempt: poll.
            async def replay_recorded(w: World = w, base: str = base) -> bool:
                r = await w.http.get(f"{base}/attempts", headers=w.auth)
                return r.json()["attempts"][0]["trigger"] == "replay"

            await wait_for(replay_recorded, what="the replay attempt recorded")
            attempts = (await w.http.get(f"{base}/attempts", headers=w.auth)).json()["attempts"]
            assert attempts[0]["trigger"] == "replay" and attempts[0]["outcome"] == "delivered"
    await receiver.stop()


async def test_one_stuck_endpoint_does_not_delay_another(w: World) -> None:
    stuck, fast = Receiver(), Receiver()
    release = asyncio.Event()

    async def hang(item: Received) -> web.Response:
        await release.wait()
        return web.Response(status=200)

    stuck.responder = hang
    await stuck.start()
    await fast.start()
    try:
        slow_ep = await endpoint(w, stuck.url, max_concurrency=1)
        fast_ep = await endpoint(w, fast.url)
        for _ in range(10):
            await w.order()
        await wait_for(lambda: len(fast.received) == 10, what="fast endpoint got everything")
        assert len(stuck.received) == 0  # still hanging on its first request
        release.set()
        await wait_for(lambda: len(stuck.received) == 10, what="stuck endpoint caught up")
        fast.verify_all(fast_ep["secret"])
        stuck.verify_all(slow_ep["secret"])
    finally:
        release.set()
        await stuck.stop()
        await fast.stop()


async def test_receiver_down_then_up_fifo_in_seq_order(w: World) -> None:
    receiver = Receiver()  # not listening yet: connections are refused
    ep = await endpoint(w, receiver.url, fifo=True, max_concurrency=8)
    orders = [await w.order() for _ in range(4)]
    for o in orders:
        for to in ("accepted", "preparing", "ready", "handed_off", "completed"):
            assert (await w.move(o["id"], to)).status_code == 200
    base = f"/v1/apps/{w.app['id']}/endpoints/{ep['id']}"

    async def failing() -> bool:
        attempts = (await w.http.get(f"{base}/attempts", headers=w.auth)).json()["attempts"]
        return len(attempts) >= 4 and all(a["outcome"] == "failed" for a in attempts)

    await wait_for(failing, what="failed attempts while the receiver is down")
    attempts = (await w.http.get(f"{base}/attempts", headers=w.auth)).json()["attempts"]
    assert attempts[0]["reason"].startswith("connection_error")
    await receiver.start()
    try:
        await wait_for(lambda: len(receiver.received) == 24, what="all 24 deliveries")
        receiver.verify_all(ep["secret"])
        by_order: dict[str, list[int]] = {}
        for item in receiver.received:
            by_order.setdefault(item.json["data"]["order_id"], []).append(item.json["data"]["seq"])
        assert by_order == {o["id"]: [1, 2, 3, 4, 5, 6] for o in orders}
    finally:
        await receiver.stop()


async def test_ssrf_guard_refuses_at_connect_time(tmp_path: Any, receiver: Receiver) -> None:
    # No allow-list: loopback is refused. "localhost" passes URL validation (a name) and is
    # refused when the worker connects to the address it resolves to.
    async for rt in open_runtime(f"sqlite:///{tmp_path}/ssrf.db", webhook_allow_cidrs=""):
        await rt.start_delivery()
        async for w in make_world(rt):
            r = await w.http.post(
                f"/v1/apps/{w.app['id']}/endpoints",
                headers=w.auth,
                json={"url": receiver.url},
            )
            assert r.status_code == 422 and r.json()["field"] == "url"
            assert "loopback" in r.json()["detail"]
            ep = await endpoint(w, f"http://localhost:{receiver.port}/hook")
            await w.order()
            base = f"/v1/apps/{w.app['id']}/endpoints/{ep['id']}"

            async def refused(w: World = w, base: str = base) -> bool:
                return bool(
                    (await w.http.get(f"{base}/attempts", headers=w.auth)).json()["attempts"]
                )

            await wait_for(refused, what="a refused attempt")
            attempt = (await w.http.get(f"{base}/attempts", headers=w.auth)).json()["attempts"][0]
            assert attempt["outcome"] == "failed" and attempt["status_code"] is None
            assert attempt["reason"].startswith("ssrf_refused")
            assert "loopback" in attempt["reason"]
            assert receiver.received == []


async def test_bad_input_is_422_naming_the_field(w: World) -> None:
    url = f"/v1/apps/{w.app['id']}/endpoints"
    cases = [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://user:pw@example.com/x"}, "url"),
        ({"url": "https://example.com/x", "dialect": "swift"}, "dialect"),
        ({"url": "https://example.com/x", "event_types": ["order.teleported"]}, "event_types.0"),
        (
            {"url": "https://example.com/x", "dialect": "ordatic", "event_types": ["order-eaten"]},
            "event_types.0",
        ),
        ({"url": "https://example.com/x", "max_concurrency": 0}, "max_concurrency"),
        ({"url": "https://example.com/x", "secret": "whsec_short"}, "secret"),
    ]
    for body, field in cases:
        r = await w.http.post(url, headers=w.auth, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "validation_error"
        assert r.json()["field"] == field, (body, r.json())
    ok = await w.http.post(
        url,
        headers=w.auth,
        json={
            "url": "https://example.com/x",
            "dialect": "ordatic",
            "event_types": ["rider-*", "order.cancelled", "order-in-kitchen"],
        },
    )
    assert ok.status_code == 201, ok.text


async def test_only_the_app_or_admin_manages_endpoints(w: World, receiver: Receiver) -> None:
    other = await w.new_app("pos")
    ep = await endpoint(w, receiver.url)
    base = f"/v1/apps/{w.app['id']}/endpoints"
    r = await w.http.get(base, headers=basic(other["key"], other["secret"]))
    assert r.status_code == 403
    r = await w.http.get(f"{base}/{ep['id']}/attempts", headers=ADMIN_H)
    assert r.status_code == 200
    listed = (await w.http.get(base, headers=w.auth)).json()["endpoints"]
    assert [e["id"] for e in listed] == [ep["id"]] and "secret" not in listed[0]
    r = await w.http.get(f"/v1/apps/{other['id']}/endpoints/{ep['id']}", headers=ADMIN_H)
    assert r.status_code == 404
    r = await w.http.delete(f"{base}/{ep['id']}", headers=w.auth)
    assert r.status_code == 204
    assert (await w.http.get(f"{base}/{ep['id']}", headers=w.auth)).status_code == 404


async def test_worker_is_woken_only_by_changes_that_queued_messages(
    w: World, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit wakes the delivery worker (one claim query) only when its transaction queued
    something to send; changes at a location without endpoints leave it asleep."""
    worker = w.runtime.delivery
    assert worker is not None
    wakes: list[int] = []
    real_wake = worker.wake

    def counting_wake(*args: object) -> None:
        wakes.append(1)
        real_wake(*args)

    monkeypatch.setattr(worker, "wake", counting_wake)
    order = await w.order()
    assert (await w.move(order["id"], "accepted")).status_code == 200
    assert wakes == []  # no endpoint: nothing queued, no wake

    await endpoint(w, receiver.url)
    assert (await w.move(order["id"], "preparing")).status_code == 200
    assert len(wakes) == 1
    await wait_for(lambda: len(receiver.received) == 1, what="the queued change delivered")
    assert receiver.received[0].json["type"] == "order.preparing"
