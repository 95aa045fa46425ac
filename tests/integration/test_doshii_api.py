"""The Doshii Partner API (/partner/v3) in-process: auth, errors, orders, webhooks.

The unmodified SDK drives the same surface in tests/e2e/test_doshii_sdk.py; this file covers
the refusals and edge cases one by one (on SQLite and PostgreSQL where storage matters).
"""

from __future__ import annotations

import time
from typing import Any

import jwt

from ordercast.dialects.doshii import version_token
from support.doshii import doshii_jwt
from support.world import World, make_channel_app

P = "/partner/v3"


def dh(w: World, location: str | None = None, **kw: Any) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {doshii_jwt(w.app['key'], w.app['secret'], **kw)}"}
    headers["doshii-location-id"] = location or w.location_id
    return headers


def doshii_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["code"] == code and body["message"], body
    return body


CREATE = {
    "order": {
        "type": "pickup",
        "status": "pending",
        "externalOrderRef": "EXT-1",
        "notes": "no onions",
        "items": [
            {
                "posId": "burger",
                "name": "Burger",
                "quantity": 2,
                "unitPrice": "1100",
                "options": [
                    {
                        "posId": "x",
                        "name": "Extras",
                        "variants": [{"name": "Bacon", "price": "150"}],
                    }
                ],
                "surcounts": [],
            },
            {"posId": "coke", "name": "Coke", "quantity": 1, "unitPrice": 450, "surcounts": []},
        ],
        "surcounts": [{"name": "Discount", "type": "absolute", "amount": -100, "value": "-100"}],
        "taxes": [],
    },
    "consumer": {
        "name": "Tony T",
        "phone": "01234567890",
        "address": {"line1": "1 Main St", "postalCode": "2000"},
    },
}


async def create(w: World, ref: str = "EXT-1") -> dict[str, Any]:
    body = {**CREATE, "order": {**CREATE["order"], "externalOrderRef": ref}}
    r = await w.http.post(f"{P}/orders", headers=dh(w), json=body)
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def test_auth_refusals_in_doshii_shape(world: World) -> None:
    w = world
    r = await w.http.get(f"{P}/orders", headers={"doshii-location-id": w.location_id})
    doshii_error(r, 401, "unauthorized")
    wrong = {
        "Authorization": f"Bearer {doshii_jwt(w.app['key'], 'not-the-secret-of-this-app-at-all-0123')}"
    }
    doshii_error(await w.http.get(f"{P}/orders", headers=wrong), 401, "unauthorized")
    unknown = {"Authorization": f"Bearer {doshii_jwt('ock_nobody', w.app['secret'])}"}
    doshii_error(await w.http.get(f"{P}/orders", headers=unknown), 401, "unauthorized")
    basic = {"Authorization": "Basic eDp5"}
    doshii_error(await w.http.get(f"{P}/orders", headers=basic), 401, "unauthorized")
    # The ±5 minute window, both ways; just inside it is accepted.
    for skew in (-301, 301):
        r = await w.http.get(f"{P}/orders", headers=dh(w, at=time.time() + skew))
        assert "300 s" in doshii_error(r, 401, "unauthorized")["message"]
    assert (await w.http.get(f"{P}/orders", headers=dh(w, at=time.time() - 290))).status_code == 200
    no_ts = {"Authorization": "Bearer " + jwt.encode({"clientId": w.app["key"]}, w.app["secret"])}
    doshii_error(await w.http.get(f"{P}/orders", headers=no_ts), 401, "unauthorized")
    # Location: required, and only granted ones (another's reads as not found).
    no_loc = {"Authorization": dh(w)["Authorization"]}
    doshii_error(await w.http.get(f"{P}/orders", headers=no_loc), 400, "validation_error")
    doshii_error(await w.http.get(f"{P}/orders", headers=dh(w, "loc_other")), 404, "not_found")
    # Unknown paths under the prefix are Doshii 404s too, not problem+json.
    doshii_error(await w.http.get(f"{P}/bookings", headers=dh(w)), 404, "not_found")


async def test_create_get_list_update_with_versions(any_world: World) -> None:
    w = any_world
    first = await create(w, "EXT-A")
    assert first["status"] == "pending" and first["type"] == "pickup"
    assert first["externalOrderRef"] == "EXT-A" and first["locationId"] == w.location_id
    assert first["items"][0]["unitPrice"] == 1100 and first["items"][0]["posId"] == "burger"
    assert first["items"][0]["totalBeforeSurcounts"] == 2 * (1100 + 150)
    assert first["consumer"]["address"]["postalCode"] == "2000"
    assert first["version"] == version_token(first["id"], 1) and len(first["version"]) == 11
    assert first["uri"].endswith(f"{P}/orders/{first['id']}")
    assert first["log"] == first["uri"] + "/logs"
    second = await create(w, "EXT-B")

    # The same order through ordercast's own API: one order, two shapes.
    mine = (await w.http.get(f"/v1/orders/{first['id']}", headers=w.auth)).json()
    assert mine["status"] == "submitted" and mine["external_order_ref"] == "EXT-A"

    r = await w.http.get(f"{P}/orders/{first['id']}", headers=dh(w))
    assert r.status_code == 200 and r.json()["version"] == first["version"]

    url = f"{P}/orders/{first['id']}"
    ok = await w.http.put(
        url, headers=dh(w), json={"status": "accepted", "version": first["version"]}
    )
    assert ok.status_code == 200, ok.text
    accepted = ok.json()
    assert accepted["status"] == "accepted" and accepted["version"] == version_token(first["id"], 2)
    # The version the partner held is now stale: 409, and nothing changes.
    stale = await w.http.put(
        url, headers=dh(w), json={"status": "complete", "version": first["version"]}
    )
    doshii_error(stale, 409, "stale_version")
    assert (await w.http.get(url, headers=dh(w))).json()["status"] == "accepted"
    r = await w.http.put(url, headers=dh(w), json={"status": "complete"})
    doshii_error(r, 400, "validation_error")
    r = await w.http.put(
        url, headers=dh(w), json={"status": "eaten", "version": accepted["version"]}
    )
    doshii_error(r, 400, "validation_error")
    done = await w.http.put(
        url,
        headers=dh(w),
        json={"status": "complete", "version": accepted["version"], "log": {"employeeName": "Sam"}},
    )
    assert done.status_code == 200 and done.json()["status"] == "complete"
    assert (await w.http.get(f"/v1/orders/{first['id']}", headers=w.auth)).json()[
        "status"
    ] == "completed"

    venue = await w.http.put(
        f"{P}/orders/{second['id']}",
        headers=dh(w),
        json={
            "status": "venue_cancelled",
            "version": second["version"],
            "rejectionReason": "closed",
        },
    )
    assert venue.status_code == 200 and venue.json()["status"] == "venue_cancelled"

    r = await w.http.get(f"{P}/orders", headers=dh(w))
    page = r.json()
    assert page["count"] == 2 and page["offset"] == 0 and page["limit"] == 50
    assert [o["id"] for o in page["rows"]] == [second["id"], first["id"]]  # newest first
    r = await w.http.get(
        f"{P}/orders", headers=dh(w), params={"sort": "asc", "limit": 1, "offset": 1}
    )
    assert r.json()["count"] == 2 and [o["id"] for o in r.json()["rows"]] == [second["id"]]
    r = await w.http.get(f"{P}/orders", headers=dh(w), params={"status": "complete,accepted"})
    assert [o["id"] for o in r.json()["rows"]] == [first["id"]]
    r = await w.http.get(f"{P}/orders", headers=dh(w), params={"externalOrderRef": "EXT-B"})
    assert [o["id"] for o in r.json()["rows"]] == [second["id"]]
    future = int(time.time()) + 3600
    r = await w.http.get(f"{P}/orders", headers=dh(w), params={"from": future})
    assert r.json() == {"count": 0, "offset": 0, "limit": 50, "rows": []}
    r = await w.http.get(f"{P}/orders", headers=dh(w), params={"status": "eaten"})
    doshii_error(r, 400, "validation_error")

    logs = (await w.http.get(f"{P}/orders/{first['id']}/logs", headers=dh(w))).json()
    assert [x["status"] for x in logs] == ["pending", "accepted", "complete"]
    assert [x["event"] for x in logs] == ["order_created", "order_updated", "order_updated"]
    assert logs[-1]["employeeName"] == "Sam"
    assert logs[-1]["version"] == done.json()["version"]


async def test_create_refusals(world: World) -> None:
    w = world
    bad = [
        {},
        {"order": {**CREATE["order"], "type": "drive-thru"}},
        {"order": {**CREATE["order"], "status": "complete"}},
        {"order": {**CREATE["order"], "items": [{"name": "X", "quantity": 1, "unitPrice": "1.5"}]}},
        {"order": {**CREATE["order"], "items": []}},
        {"order": {**CREATE["order"], "items": "burger"}},
    ]
    for body in bad:
        doshii_error(
            await w.http.post(f"{P}/orders", headers=dh(w), json=body), 400, "validation_error"
        )
    r = await w.http.post(f"{P}/orders", headers=dh(w), content=b"{not json")
    doshii_error(r, 400, "validation_error")
    assert (await w.http.get(f"{P}/orders", headers=dh(w))).json()["count"] == 0


async def test_delivery_subscription_and_unknown_orders(world: World) -> None:
    w = world
    order = await create(w)
    url = f"{P}/orders/{order['id']}"
    r = await w.http.put(
        f"{url}/delivery",
        headers=dh(w),
        json={
            "status": "delivering",
            "driverName": "Dana",
            "driverPhone": "0400",
            "trackingUrl": "https://track.example/1",
            "deliveryEta": "2030-01-01T10:00:00Z",
            "version": order["version"],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["delivery"]["status"] == "delivering" and body["delivery"]["driverName"] == "Dana"
    assert body["delivery"]["trackingUrl"] == "https://track.example/1"
    assert body["delivery"]["deliveryEta"].startswith("2030-01-01T10:00:00")
    mine = (await w.http.get(f"/v1/orders/{order['id']}", headers=w.auth)).json()
    assert mine["status"] == "handed_off" and mine["deliveries"][0]["status"] == "picked_up"
    r = await w.http.put(
        f"{url}/delivery", headers=dh(w), json={"status": "delivered", "version": order["version"]}
    )
    doshii_error(r, 409, "stale_version")
    r = await w.http.put(
        f"{url}/delivery", headers=dh(w), json={"status": "delivered", "version": body["version"]}
    )
    assert r.status_code == 200 and r.json()["status"] == "complete"
    assert r.json()["delivery"]["status"] == "delivered"

    # Subscription answers in Doshii's shapes; unknown orders are 404s.
    r = await w.http.post(f"{url}/subscription", headers=dh(w))
    assert r.status_code == 200 and r.json()["id"] == order["id"]
    r = await w.http.delete(f"{url}/subscription", headers=dh(w))
    assert r.status_code == 200 and "unsubscribed" in r.json()["message"]
    assert await w.runtime.store.subscriber_ids(order["id"]) == []
    for method in ("get", "post", "delete"):
        path = f"{P}/orders/ord_nope" + ("" if method == "get" else "/subscription")
        doshii_error(await getattr(w.http, method)(path, headers=dh(w)), 404, "not_found")


async def test_webhook_registrations(world: World) -> None:
    w = world
    hooks = f"{P}/webhooks"
    body = {
        "event": "order_updated",
        "webhookUrl": "https://partner.example/hooks",
        "authenticationKey": "k",
        "authenticationToken": "t",
    }
    r = await w.http.post(hooks, headers=dh(w), json=body)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["event"] == "order_updated" and made["authenticationEnabled"] is True
    assert made["webhookUrl"] == body["webhookUrl"] and made["locationId"] == w.location_id
    assert "authenticationToken" not in made and "secret" not in made
    doshii_error(await w.http.post(hooks, headers=dh(w), json=body), 409, "conflict")
    for bad in (
        {**body, "event": "booking_created"},
        {**body, "webhookUrl": "http://127.0.0.1:9/x"},  # SSRF guard
        {**body, "event": "order_created", "authenticationToken": None},  # key without token
        {"event": "order_created"},
    ):
        doshii_error(await w.http.post(hooks, headers=dh(w), json=bad), 400, "validation_error")
    auth_only = {"Authorization": dh(w)["Authorization"]}
    r = await w.http.get(hooks, headers=auth_only)
    assert [h["event"] for h in r.json()] == ["order_updated"]
    r = await w.http.get(f"{hooks}/order_updated", headers=auth_only)
    assert r.json()["webhookUrl"] == body["webhookUrl"]
    r = await w.http.put(
        f"{hooks}/order_updated",
        headers=auth_only,
        json={"webhookUrl": "https://partner.example/v2"},
    )
    assert r.status_code == 200 and r.json()["webhookUrl"] == "https://partner.example/v2"
    assert r.json()["authenticationEnabled"] is False
    # The registration is an ordinary endpoint of the app (attempts, replay, …).
    eps = (await w.http.get(f"/v1/apps/{w.app['id']}/endpoints", headers=w.auth)).json()
    assert [(e["dialect"], e["event_types"]) for e in eps["endpoints"]] == [
        ("doshii", ["order_updated"])
    ]
    r = await w.http.delete(f"{hooks}/order_updated", headers=auth_only)
    assert r.status_code == 200 and r.json()["message"]
    doshii_error(await w.http.get(f"{hooks}/order_updated", headers=auth_only), 404, "not_found")
    doshii_error(await w.http.delete(f"{hooks}/order_updated", headers=auth_only), 404, "not_found")


async def test_free_text_is_bounded_and_nothing_changes(world: World) -> None:
    w = world
    order = await create(w)
    url = f"{P}/orders/{order['id']}"
    v = order["version"]
    for body in (
        {"status": "accepted", "version": v, "mealPhase": "x" * 201},
        {"status": "accepted", "version": v, "log": "Sam"},
        {"status": "accepted", "version": v, "log": {"employeeName": "x" * 201}},
        {"status": "rejected", "version": v, "rejectionReason": "x" * 2001},
    ):
        doshii_error(await w.http.put(url, headers=dh(w), json=body), 400, "validation_error")
    r = await w.http.put(
        f"{url}/delivery", headers=dh(w), json={"driverName": "x" * 501, "version": v}
    )
    doshii_error(r, 400, "validation_error")
    assert (await w.http.get(url, headers=dh(w))).json()["version"] == v


async def test_another_tenants_app_sees_nothing(world: World) -> None:
    w = world
    order = await create(w)
    await w.http.post(
        f"{P}/webhooks",
        headers=dh(w),
        json={"event": "order_created", "webhookUrl": "https://partner.example/h"},
    )
    other = await make_channel_app(w.runtime, "Other")
    auth = {"Authorization": f"Bearer {doshii_jwt(other.key, other.secret)}"}
    for location in (w.location_id, other.location_id):
        h = {**auth, "doshii-location-id": location}
        for method, path in (
            ("get", f"/orders/{order['id']}"),
            ("get", f"/orders/{order['id']}/logs"),
            ("post", f"/orders/{order['id']}/subscription"),
            ("delete", f"/orders/{order['id']}/subscription"),
        ):
            r = await getattr(w.http, method)(f"{P}{path}", headers=h)
            doshii_error(r, 404, "not_found")
            assert order["id"] not in r.text or location == other.location_id
        r = await w.http.put(
            f"{P}/orders/{order['id']}",
            headers=h,
            json={"status": "accepted", "version": order["version"]},
        )
        doshii_error(r, 404, "not_found")
    doshii_error(
        await w.http.get(f"{P}/orders", headers={**auth, "doshii-location-id": w.location_id}),
        404,
        "not_found",
    )
    mine = await w.http.get(
        f"{P}/orders", headers={**auth, "doshii-location-id": other.location_id}
    )
    assert mine.json()["count"] == 0
    assert (await w.http.get(f"{P}/webhooks", headers=auth)).json() == []
    doshii_error(await w.http.get(f"{P}/webhooks/order_created", headers=auth), 404, "not_found")
    assert (await w.http.get(f"{P}/orders/{order['id']}", headers=dh(w))).json()[
        "status"
    ] == "pending"
