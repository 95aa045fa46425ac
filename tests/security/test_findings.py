"""Regression tests for the audit's findings (issue 12), each failing before its fix."""

from __future__ import annotations

import json

from ordercast.dialects.opendining import ORDER_CHANNEL_PREFIX
from security.estate import Estate, pusher_subscribe, stomp_subscribe


async def test_pusher_last_state_cache_does_not_leak_across_tenants_or_locations(
    estate: Estate,
) -> None:
    """Finding 1: an app signing another tenant's (or another location's) order channel
    with its own secret got the order's last event from the gateway's cache."""
    victim = estate.order("t0", "l0", "u0")
    channel = ORDER_CHANNEL_PREFIX + victim.id
    # Control: the victim's own app gets the cached order_tracker (the note's text) at once.
    owner = estate.app("t0", "l0", "channel")
    outcome, seen = await pusher_subscribe(estate, owner, channel)
    assert outcome["event"] == "pusher_internal:subscription_succeeded"
    assert victim.marker in seen.text and '"event":"order_tracker"' in seen.text
    assert channel in estate.runtime.pusher.orders.last_state
    # Another tenant's app, and the same tenant's app of another location, of every kind.
    for attacker, status in [(a, 404) for a in estate.apps.values() if a.tenant == "t1"] + [
        (a, 403) for a in estate.apps.values() if (a.tenant, a.location) == ("t0", "l1")
    ]:
        outcome, seen = await pusher_subscribe(estate, attacker, channel)
        assert outcome["event"] == "pusher:subscription_error", (attacker.name, seen.frames)
        assert json.loads(outcome["data"])["status"] == status, (attacker.name, outcome)
        assert seen.leaks(estate.markers()) == [], (attacker.name, seen.frames)
        assert victim.id not in seen.text.replace(channel, ""), seen.frames


async def test_user_token_carries_its_apps_location_grants(estate: Estate) -> None:
    """Finding 2: app A1 (granted l0 only) minted a token for carol and read and cancelled
    carol's order at l1 with it (REST), and subscribed to it over STOMP."""
    http = estate.http
    a1 = estate.app("t0", "l0", "channel")
    token = await estate.mint(a1, "u1")  # u1 has an order at l0 and one at l1
    there = estate.order("t0", "l1", "u1")
    here = estate.order("t0", "l0", "u1")
    h = {"Authorization": f"Bearer {token}"}
    r = await http.get(f"/v1/orders/{there.id}", headers=h)
    assert r.status_code == 403 and there.marker not in r.text, r.text
    r = await http.post(f"/v1/orders/{there.id}/cancellation", headers=h, json={"reason": "x"})
    assert r.status_code == 403 and there.marker not in r.text, r.text
    r = await http.get(f"/v1/orders/{there.id}/events", headers=h)
    assert r.status_code == 403 and there.marker not in r.text, r.text
    admin_view = (await http.get(f"/v1/orders/{there.id}", headers=estate.admin)).json()
    assert admin_view["status"] == "submitted" and not admin_view.get("cancel_requested")
    listed = (await http.get("/v1/orders", headers=h)).json()["orders"]
    assert [o["id"] for o in listed] == [here.id]
    r = await http.get(f"/v1/orders?location_id={there.location_id}", headers=h)
    assert r.status_code == 403, r.text
    # Control: the same token reads u1's order at l0.
    r = await http.get(f"/v1/orders/{here.id}", headers=h)
    assert r.status_code == 200 and here.marker in r.text
    # Pusher auth endpoint: refused (it was already).
    r = await http.post(
        "/api/v1/pusher/auth",
        params={"key": a1.key, "access_token": token},
        data={"socket_id": "1.2", "channel_name": ORDER_CHANNEL_PREFIX + there.id},
    )
    assert r.status_code == 403 and there.marker not in r.text
    # STOMP: the order's own destination is refused ...
    out = await stomp_subscribe(estate, token, "", f"/order-changes/u1/{there.id}")
    assert out.connected and not out.subscribed and out.error == "forbidden"
    assert out.capture.leaks(estate.markers()) == []
    # ... and the user's multi-order stream carries l0's changes but not l1's.
    pos_l1 = estate.app("t0", "l1", "pos")
    pos_l0 = estate.app("t0", "l0", "pos")

    async def change_both() -> None:
        for app, order in ((pos_l1, there), (pos_l0, here)):
            r = await http.post(
                f"/v1/orders/{order.id}/transitions", headers=app.auth, json={"to": "accepted"}
            )
            assert r.status_code == 200, r.text

    out = await stomp_subscribe(
        estate, token, "", f"/order-changes/{here.tenant_id}/u1", then=change_both
    )
    assert out.subscribed, out.capture.frames
    assert here.id in out.capture.text  # control: l0's change arrived
    assert there.id not in out.capture.text and there.marker not in out.capture.text
