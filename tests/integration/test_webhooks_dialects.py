"""Dialect routing end to end: one delivery order's life, seen by apps of every kind through
Ordatic, RBI and Doshii endpoints (real receivers, signatures verified)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ordercast.runtime import Runtime
from support.webhooks import Receiver, open_runtime, wait_for
from support.world import World, basic, make_world


@pytest.fixture
async def w(tmp_path: Any) -> AsyncIterator[World]:
    rt: Runtime
    async for rt in open_runtime(f"sqlite:///{tmp_path}/dialects.db"):
        await rt.start_delivery()
        async for world in make_world(rt):
            yield world


async def test_one_order_through_every_dialect(w: World) -> None:
    apps = {"channel": w.app}
    for kind in ("pos", "rider", "loyalty"):
        apps[kind] = await w.new_app(kind)
    receivers: dict[str, Receiver] = {}
    secrets: dict[str, str] = {}

    async def hook(name: str, app: dict[str, Any], dialect: str) -> None:
        r = Receiver()
        await r.start()
        receivers[name] = r
        resp = await w.http.post(
            f"/v1/apps/{app['id']}/endpoints",
            headers=basic(app["key"], app["secret"]),
            json={"url": r.url, "dialect": dialect, "fifo": True},
        )
        assert resp.status_code == 201, resp.text
        secrets[name] = resp.json()["secret"]

    for kind, app in apps.items():
        await hook(f"ordatic-{kind}", app, "ordatic")
    await hook("rbi-pos", apps["pos"], "rbi")
    await hook("doshii-channel", apps["channel"], "doshii")  # creates the order: subscribed
    await hook("doshii-loyalty", apps["loyalty"], "doshii")  # not subscribed
    try:
        # Explicitly submitted: with an rbi POS endpoint the location runs the POS flow,
        # whose orders otherwise start at draft (price first).
        order = await w.order(type="delivery", status="submitted")
        oid = order["id"]
        for to in ("accepted", "preparing", "ready"):
            assert (await w.move(oid, to)).status_code == 200
        rider = basic(apps["rider"]["key"], apps["rider"]["secret"])
        r = await w.http.post(f"/v1/orders/{oid}/deliveries", headers=rider, json={})
        assert r.status_code == 201, r.text
        did = r.json()["id"]
        for body in (
            {"status": "assigned"},
            {"status": "picked_up"},
            {"status": "delivered", "proof": {"image": "iVBORw0KGgo="}},
            {"refund": {"id": "rf1", "total_rider_refund": 100, "reason": "cold"}},
        ):
            r = await w.http.post(f"/v1/deliveries/{did}/status", headers=rider, json=body)
            assert r.status_code == 200, r.text
        expected = {
            "ordatic-channel": [
                "order-in-kitchen",
                "order-ready-to-pick-up",
                "rider-created",
                "rider-picking",
                "rider-delivering",
                "rider-completed",
                "rider-proof-delivery",
                "rider-refund",
            ],
            "ordatic-pos": [
                "order-accepted",
                "rider-created",
                "rider-picking",
                "rider-delivering",
                "rider-completed",
            ],
            "ordatic-rider": ["order-in-kitchen", "order-ready-to-pick-up"],
            "ordatic-loyalty": ["order-in-kitchen"],
        }

        def kinds(name: str) -> list[str]:
            return [x.json["eventType"] for x in receivers[name].received]

        for name, events in expected.items():
            await wait_for(
                lambda n=name, e=events: len(kinds(n)) >= len(e), 5, f"{name}: {kinds(name)}"
            )

        # The rbi POS and the subscribed Doshii app see the rest of the life too.
        def rbi_events() -> list[dict[str, Any]]:
            return [
                x.json
                for x in receivers["rbi-pos"].received
                if x.json["eventType"] == "ORDER_EVENT"
            ]

        await wait_for(lambda: len(rbi_events()) >= 5, what="rbi")
        for name, events in expected.items():
            assert kinds(name) == events, name
            for x in receivers[name].received:
                assert x.json["storeId"] == w.location_id and x.json["data"]["orderId"] == oid
        proof = receivers["ordatic-channel"].received[6].json["data"]
        assert proof["proofDelivery"] == "iVBORw0KGgo="
        refund = receivers["ordatic-channel"].received[7].json["data"]["refund"]
        assert refund == {"id": "rf1", "totalRiderRefund": 100, "reason": "cold"}
        statuses = [x["status"] for x in rbi_events()]
        assert statuses == ["CREATED", "COMMITTED", "PREPARING", "PREPARED", "DONE"]
        assert all(x["orderId"] == oid and x["storeId"] == w.location_id for x in rbi_events())
        await wait_for(lambda: len(receivers["doshii-channel"].received) >= 10, what="doshii")
        doshii = [x.json for x in receivers["doshii-channel"].received]
        assert doshii[0]["type"] == "order_created"
        assert all(d["type"] == "order_updated" for d in doshii[1:])
        assert doshii[-1]["data"]["status"] == "complete" and doshii[-1]["data"]["id"] == oid
        assert receivers["doshii-loyalty"].received == []
        # Loyalty subscribes (Doshii's POST /orders/{id}/subscription): now it hears.
        loyalty = basic(apps["loyalty"]["key"], apps["loyalty"]["secret"])
        r = await w.http.post(f"/v1/orders/{oid}/subscription", headers=loyalty)
        assert r.status_code in (200, 201), r.text
        await w.http.post(f"/v1/orders/{oid}/notes", headers=w.auth, json={"text": "Enjoy!"})
        await wait_for(lambda: len(receivers["doshii-loyalty"].received) == 1, what="subscribed")
        assert receivers["doshii-loyalty"].received[0].json["data"]["phase"] == "Enjoy!"
        for name, r in receivers.items():
            r.verify_all(secrets[name])
    finally:
        for r in receivers.values():
            await r.stop()


async def test_courier_proof_as_seed_002_sends_it(w: World) -> None:
    """Seed 002's rider sends proof of delivery as one string (Uber Direct: a base64 PNG), or
    as ``proofDelivery``: accepted with the ``delivered`` status (422 before), stored on the
    delivery, and sent to the Ordatic endpoint as ``data.proofDelivery`` for two orders."""
    rider = await w.new_app("rider")
    receiver = Receiver()
    await receiver.start()
    try:
        resp = await w.http.post(
            f"/v1/apps/{w.app['id']}/endpoints",
            headers=w.auth,
            json={"url": receiver.url, "dialect": "ordatic", "fifo": True},
        )
        assert resp.status_code == 201, resp.text
        auth = basic(rider["key"], rider["secret"])
        png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
        bodies = [
            {"status": "delivered", "proof": png},
            {"status": "delivered", "proofDelivery": png[::-1]},
        ]
        oids = []
        for body in bodies:
            oid = (await w.order(type="delivery"))["id"]
            oids.append(oid)
            r = await w.http.post(f"/v1/orders/{oid}/deliveries", headers=auth, json={})
            assert r.status_code == 201, r.text
            did = r.json()["id"]
            r = await w.http.post(f"/v1/deliveries/{did}/status", headers=auth, json=body)
            assert r.status_code == 200, r.text
            assert r.json()["delivery"]["status"] == "delivered"
            assert r.json()["delivery"]["proof"] == body.get("proof", body.get("proofDelivery"))
            assert r.json()["order"]["status"] == "completed"
            r = await w.http.get(f"/v1/orders/{oid}", headers=w.auth)
            assert r.json()["deliveries"][0]["proof"] == body.get("proof", png[::-1])

        def proofs() -> dict[str, str]:
            return {
                x.json["data"]["orderId"]: x.json["data"]["proofDelivery"]
                for x in receiver.received
                if x.json["eventType"] == "rider-proof-delivery"
            }

        await wait_for(lambda: len(proofs()) == 2, what="proofs")
        assert proofs() == {oids[0]: png, oids[1]: png[::-1]}
        bad = await w.http.post(f"/v1/deliveries/{did}/status", headers=auth, json={"proof": 42})
        assert bad.status_code == 422 and bad.json()["code"] == "validation_error", bad.text
    finally:
        await receiver.stop()
