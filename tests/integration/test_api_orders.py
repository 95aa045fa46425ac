"""The REST API end to end (in-process ASGI), on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

from support.world import World, basic, bearer

PROBLEM = "application/problem+json"


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["detail"]
    return body


async def test_order_lifecycle_with_courier(any_world: World) -> None:
    w = any_world
    order = await w.order()
    assert order["status"] == "submitted"
    assert order["version"] == 1
    assert order["total"] == 2 * (899 + 150) + 350
    assert order["items"][0]["total_before_surcounts"] == 2098
    assert order["uri"].endswith(f"/v1/orders/{order['id']}")
    oid = order["id"]

    for to in ("accepted", "preparing", "ready"):
        r = await w.move(oid, to)
        assert r.status_code == 200, r.text
        assert r.json()["applied"] is True
        assert r.json()["order"]["status"] == to

    r = await w.http.post(f"/v1/orders/{oid}/deliveries", headers=w.auth, json={"provider": "acme"})
    assert r.status_code == 201, r.text
    delivery = r.json()
    assert delivery["status"] == "requested"

    async def courier(status: str) -> dict[str, Any]:
        r = await w.http.post(
            f"/v1/deliveries/{delivery['id']}/status", headers=w.auth, json={"status": status}
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    assert (await courier("courier_confirmed"))["delivery"]["status"] == "assigned"
    picked = await courier("picked_up")
    assert picked["order"]["status"] == "handed_off"
    assert [e["type"] for e in picked["events"]] == ["delivery.picked_up", "order.handed_off"]
    done = await courier("Delivered")  # a legacy Open Dining string
    assert done["order"]["status"] == "completed"
    assert done["order"]["completed_how"] == "delivered"

    r = await w.http.get(f"/v1/orders/{oid}", headers=w.auth)
    assert r.json()["version"] == 10

    r = await w.http.get(f"/v1/orders/{oid}/events?after_seq=0", headers=w.auth)
    events = r.json()["events"]
    assert [e["seq"] for e in events] == list(range(1, 11))
    assert events[0]["type"] == "order.created"
    for e in events:
        assert e["event_id"] and e["occurred_at"] and e["recorded_at"]
        assert e["actor"]["type"] == "app"
    r = await w.http.get(f"/v1/orders/{oid}/events?after_seq=8&limit=1", headers=w.auth)
    body = r.json()
    assert [e["seq"] for e in body["events"]] == [9]
    assert body["has_more"] is True and body["next_after_seq"] == 9


async def test_stale_duplicate_and_invalid_moves(any_world: World) -> None:
    w = any_world
    oid = (await w.order())["id"]
    assert (await w.move(oid, "ready")).json()["applied"] is True
    stale = (await w.move(oid, "accepted")).json()
    assert stale["applied"] is False and stale["outcome"] == "stale"
    assert [e["type"] for e in stale["events"]] == ["order.stale_update"]
    dup = (await w.move(oid, "ready")).json()
    assert dup["applied"] is False and dup["events"] == []
    assert (await w.move(oid, "cancelled", reason="out of buns")).json()["applied"] is True
    body = problem(await w.move(oid, "preparing"), 409, "invalid_transition")
    assert body["current"] == "cancelled" and body["requested"] == "preparing"
    reopened = (await w.move(oid, "reopened")).json()
    assert reopened["order"]["status"] == "ready"
    versions = (await w.http.get(f"/v1/orders/{oid}/events", headers=w.auth)).json()["events"]
    assert [e["seq"] for e in versions] == [1, 2, 3, 4, 5]


async def test_open_dining_confirmations(world: World) -> None:
    w = world
    order = await w.order()
    fries = order["items"][1]["uuid"]
    r = await w.http.post(
        f"/v1/orders/{order['id']}/confirmation",
        headers=w.auth,
        json={
            "confirmation": 2,
            "adjustment": {"time": 45, "items": [fries], "options": ["Extras"]},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["type"] for e in body["events"]] == ["order.accepted", "order.adjusted"]
    assert [i["name"] for i in body["order"]["items"]] == ["Cheeseburger"]
    assert body["order"]["items"][0]["options"] == []
    assert body["order"]["total"] == 2 * 899
    assert body["order"]["available_eta"]

    advance = await w.order(required_at="2026-12-01T23:00:00Z")
    r = await w.http.post(
        f"/v1/orders/{advance['id']}/confirmation",
        headers=w.auth,
        json={"confirmation": 2, "adjustment": {"order_date": "12/01/2026", "eta": "9:45 PM"}},
    )
    # 9:45 PM in America/New_York (EST, UTC-5) is 02:45 UTC the next day.
    assert r.json()["order"]["required_at"] == "2026-12-02T02:45:00.000000Z"

    rejected = await w.order()
    r = await w.http.post(
        f"/v1/orders/{rejected['id']}/confirmation",
        headers=w.auth,
        json={"confirmation": 3, "reason": "Kitchen closed"},
    )
    assert r.json()["order"]["status"] == "rejected"
    assert r.json()["order"]["rejection_reason"] == "Kitchen closed"
    problem(
        await w.http.post(
            f"/v1/orders/{order['id']}/confirmation", headers=w.auth, json={"confirmation": 7}
        ),
        422,
        "validation_error",
    )
    problem(
        await w.http.post(
            f"/v1/orders/{advance['id']}/confirmation",
            headers=w.auth,
            json={"confirmation": 2, "adjustment": {"order_date": "2026-12-01", "eta": "9:45 PM"}},
        ),
        422,
        "validation_error",
    )


async def test_notifications_notes_cancellation(world: World) -> None:
    w = world
    oid = (await w.order(user_id="user-42"))["id"]
    r = await w.http.post(
        f"/v1/orders/{oid}/notifications",
        headers=w.auth,
        json={"type": "delivery_fee_changed", "message": "Fee is now $3"},
    )
    event = r.json()["events"][0]
    assert event["type"] == "order.notification"
    assert len(event["data"]["notification_id"]) == 36
    r = await w.http.post(
        f"/v1/orders/{oid}/notes", headers=w.auth, json={"text": "Dave is making your sandwich"}
    )
    assert r.json()["order"]["phase"] == "Dave is making your sandwich"

    # A customer can only ask; the venue decides.
    tok = (await w.http.post("/v1/users/user-42/tokens", headers=w.auth, json={})).json()
    r = await w.http.post(
        f"/v1/orders/{oid}/cancellation",
        headers=bearer(tok["access_token"]),
        json={"reason": "changed my mind"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["order"]["status"] == "submitted"
    assert r.json()["order"]["cancel_requested"] == {"reason": "changed my mind", "by": "customer"}
    r = await w.http.post(f"/v1/orders/{oid}/cancellation", headers=w.auth, json={"reason": "ok"})
    assert r.json()["order"]["status"] == "cancelled"
    assert r.json()["order"]["cancellation"] == {"reason": "ok", "by": "customer"}


async def test_user_tokens_see_only_their_orders(world: World) -> None:
    w = world
    mine = await w.order(user_id="alice")
    theirs = await w.order(user_id="bob")
    r = await w.http.post("/v1/users/alice/tokens", headers=w.auth, json={"ttl": 600})
    assert r.status_code == 201
    tok = r.json()
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 600
    alice = bearer(tok["access_token"])
    assert (await w.http.get(f"/v1/orders/{mine['id']}", headers=alice)).status_code == 200
    # Another customer's order in the same tenant: forbidden (404 is for other tenants).
    problem(await w.http.get(f"/v1/orders/{theirs['id']}", headers=alice), 403, "forbidden")
    listed = (await w.http.get("/v1/orders", headers=alice)).json()["orders"]
    assert [o["id"] for o in listed] == [mine["id"]]
    events = await w.http.get(f"/v1/orders/{mine['id']}/events", headers=alice)
    assert events.status_code == 200
    # Users read; they do not move orders.
    r = await w.http.post(
        f"/v1/orders/{mine['id']}/transitions", headers=alice, json={"to": "ready"}
    )
    problem(r, 403, "forbidden")
    problem(await w.http.get("/v1/orders", headers=bearer("oct_forged.sig")), 401, "unauthorized")
    # Only channel apps issue tokens.
    pos = await w.new_app("pos")
    problem(
        await w.http.post("/v1/users/x/tokens", headers=basic(pos["key"], pos["secret"])),
        403,
        "forbidden",
    )


async def test_expired_token_is_refused(world: World) -> None:
    w = world
    signer = w.runtime.directory.signer
    token = signer.issue(user_id="u", tenant_id=w.tenant_id, app_id="a", now=1_000, ttl=60)
    body = problem(await w.http.get("/v1/orders", headers=bearer(token)), 401, "unauthorized")
    assert "expired" in body["detail"]


async def test_tenant_and_location_isolation(world: World) -> None:
    w = world
    order = await w.order()
    # Another tenant's app sees nothing of it.
    t2 = (await w.http.post("/v1/tenants", headers=w.admin, json={"name": "Other"})).json()
    l2 = (
        await w.http.post(
            "/v1/locations", headers=w.admin, json={"tenant_id": t2["id"], "name": "X"}
        )
    ).json()
    other = (
        await w.http.post(
            "/v1/apps",
            headers=w.admin,
            json={
                "tenant_id": t2["id"],
                "name": "o",
                "kind": "channel",
                "location_ids": [l2["id"]],
            },
        )
    ).json()
    h = basic(other["key"], other["secret"])
    problem(await w.http.get(f"/v1/orders/{order['id']}", headers=h), 404, "not_found")
    problem(await w.http.post(f"/v1/orders/{order['id']}/transitions", headers=h, json={"to": "ready"}), 404, "not_found")  # fmt: skip
    problem(await w.http.get(f"/v1/orders/{order['id']}/events", headers=h), 404, "not_found")
    assert (await w.http.get("/v1/orders", headers=h)).json()["orders"] == []
    # Same tenant, but the location is not granted to this app: forbidden.
    ungranted = await w.new_app("rider", location_ids=[])
    hu = basic(ungranted["key"], ungranted["secret"])
    problem(await w.http.get(f"/v1/orders/{order['id']}", headers=hu), 403, "forbidden")
    r = await w.http.post(
        "/v1/orders",
        headers=hu,
        json={
            "location_id": w.location_id,
            "items": [{"name": "a", "quantity": 1, "unit_price": 1}],
        },
    )
    problem(r, 403, "forbidden")
    # Admin endpoints need the admin token.
    problem(await w.http.post("/v1/tenants", headers=w.auth, json={"name": "x"}), 403, "forbidden")
    problem(await w.http.post("/v1/tenants", json={"name": "x"}), 401, "unauthorized")
    problem(await w.http.post("/v1/tenants", headers=basic(w.app["key"], "wrong"), json={"name": "x"}), 401, "unauthorized")  # fmt: skip


async def test_doshii_subscriptions(world: World) -> None:
    w = world
    order = await w.order()
    pos = await w.new_app("pos")
    h = basic(pos["key"], pos["secret"])
    runtime = w.runtime
    assert await runtime.store.subscriber_ids(order["id"]) == [w.app["id"]]  # creator: implicit
    r = await w.http.post(
        f"/v1/orders/{order['id']}/subscription", headers={**h, "doshii-location-id": w.location_id}
    )
    assert r.status_code == 200, r.text
    assert r.json()["id"] == order["id"] and r.json()["subscribed"] is True
    assert sorted(await runtime.store.subscriber_ids(order["id"])) == sorted(
        [w.app["id"], pos["id"]]
    )
    r = await w.http.post(
        f"/v1/orders/{order['id']}/subscription", headers={**h, "X-Location-Id": "loc_wrong"}
    )
    problem(r, 422, "validation_error")
    r = await w.http.delete(f"/v1/orders/{order['id']}/subscription", headers=h)
    assert r.status_code == 204
    assert await runtime.store.subscriber_ids(order["id"]) == [w.app["id"]]
    # An app that updates an order is subscribed implicitly.
    await w.http.post(f"/v1/orders/{order['id']}/notes", headers=h, json={"text": "hi"})
    assert pos["id"] in await runtime.store.subscriber_ids(order["id"])


async def test_list_orders_filters(world: World) -> None:
    w = world
    a = await w.order()
    b = await w.order()
    await w.move(b["id"], "accepted")
    r = await w.http.get("/v1/orders", headers=w.auth, params={"status": "accepted"})
    assert [o["id"] for o in r.json()["orders"]] == [b["id"]]
    r = await w.http.get("/v1/orders", headers=w.auth, params={"location_id": w.location_id})
    assert {o["id"] for o in r.json()["orders"]} == {a["id"], b["id"]}
    r = await w.http.get(
        "/v1/orders", headers=w.auth, params={"updated_since": "2999-01-01T00:00:00Z"}
    )
    assert r.json()["orders"] == []
    problem(await w.http.get("/v1/orders", headers=w.auth, params={"status": "nope"}), 422, "validation_error")  # fmt: skip


async def test_locations_settings_and_apps(world: World) -> None:
    w = world
    r = await w.http.patch(
        f"/v1/locations/{w.location_id}",
        headers=w.admin,
        json={"settings": {"tracker_labels": {"ready": "Come get it"}, "legacy_tracker": True}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["legacy_tracker"] is True
    bad = await w.http.patch(
        f"/v1/locations/{w.location_id}",
        headers=w.admin,
        json={"settings": {"tracker_labels": {"flying": "x"}}},
    )
    assert "flying" in problem(bad, 422, "validation_error")["detail"]
    problem(
        await w.http.post(
            "/v1/locations",
            headers=w.admin,
            json={"tenant_id": w.tenant_id, "name": "x", "timezone": "Mars/Olympus"},
        ),
        422,
        "validation_error",
    )
    problem(
        await w.http.post(
            "/v1/apps",
            headers=w.admin,
            json={"tenant_id": w.tenant_id, "name": "x", "kind": "robot"},
        ),
        422,
        "validation_error",
    )
    problem(
        await w.http.post(
            "/v1/locations", headers=w.admin, json={"tenant_id": "ten_nope", "name": "x"}
        ),
        404,
        "not_found",
    )


BAD_BODIES: list[Any] = [
    "{",
    "[]",
    "null",
    '{"location_id": 5}',
    '{"location_id": "x", "items": []}',
    '{"location_id": "x", "items": [{"name": "a", "quantity": 0, "unit_price": 1}]}',
    '{"location_id": "x", "items": [{"name": "a", "quantity": 1, "unit_price": -1}]}',
    '{"location_id": "x", "type": "teleport", "items": [{"name": "a", "quantity": 1, "unit_price": 1}]}',
    '{"location_id": "x", "bogus": 1, "items": [{"name": "a", "quantity": 1, "unit_price": 1}]}',
    '{"location_id": "x", "fire_order_in_seconds": 100001, "items": [{"name": "a", "quantity": 1, "unit_price": 1}]}',
    "\xff\xfe",
]


async def test_bad_input_is_a_clear_4xx_never_500(world: World) -> None:
    w = world
    oid = (await w.order())["id"]
    for raw in BAD_BODIES:
        r = await w.http.post(
            "/v1/orders",
            headers={**w.auth, "content-type": "application/json"},
            content=raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw,
        )
        body = problem(r, 422, "validation_error")
        assert body["errors"]
    for path, payload in [
        (f"/v1/orders/{oid}/transitions", {"to": 5}),
        (f"/v1/orders/{oid}/transitions", {}),
        (f"/v1/orders/{oid}/notifications", {"type": "", "message": "x"}),
        (f"/v1/orders/{oid}/cancellation", {"by": "martians"}),
        (f"/v1/orders/{oid}/transitions", {"to": "ready", "occurred_at": "yesterday"}),
    ]:
        problem(await w.http.post(path, headers=w.auth, json=payload), 422, "validation_error")
    problem(await w.http.get("/v1/orders/ord_missing", headers=w.auth), 404, "not_found")
    problem(await w.http.post("/v1/deliveries/dlv_x/status", headers=w.auth, json={"status": "assigned"}), 404, "not_found")  # fmt: skip
    problem(await w.http.get("/v1/nothing-here", headers=w.auth), 404, "not_found")
    problem(await w.http.get(f"/v1/orders/{oid}/events?after_seq=-1", headers=w.auth), 422, "validation_error")  # fmt: skip
    problem(await w.http.get("/v1/orders", headers={"Authorization": "Basic !!!"}), 401, "unauthorized")  # fmt: skip
    problem(await w.http.get("/v1/orders", headers={"Authorization": "Digest x"}), 401, "unauthorized")  # fmt: skip
    # Nothing half-written: the order is exactly as before.
    assert (await w.http.get(f"/v1/orders/{oid}", headers=w.auth)).json()["version"] == 1


async def test_health_metrics_openapi(world: World) -> None:
    w = world
    assert (await w.http.get("/health")).json() == {"status": "ok"}
    await w.order()
    metrics = (await w.http.get("/metrics")).text
    assert 'ordercast_events_appended_total{type="order.created"}' in metrics
    spec = (await w.http.get("/openapi.json")).json()
    for path in (
        "/v1/orders",
        "/v1/orders/{order_id}/transitions",
        "/v1/orders/{order_id}/subscription",
    ):
        assert path in spec["paths"]
