"""The operator console at /dashboard: its isolation rules over HTTP, and the page itself in
a real browser (Debian's chromium driven by playwright-core from tests/node).

The browser test skips without /usr/bin/chromium locally and fails under
ORDERCAST_REQUIRE_SERVICES=1 (CI installs it). It writes the README's screenshots to
``docs/`` when ORDERCAST_SCREENSHOTS=1, else to a temporary folder."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ordercast.runtime import Runtime
from support.paths import DOCS, NODE_DIR
from support.pusher import start_live
from support.stomp import raw_client, start_stomp
from support.webhooks import Receiver, fresh_database_url, open_runtime, wait_for
from support.world import World, basic, make_world

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(params=["sqlite", "postgresql"])
async def rt(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Runtime]:
    async for url in fresh_database_url(request.param, tmp_path):
        async for runtime in open_runtime(url):
            await runtime.start_delivery()
            yield runtime


@pytest.fixture
async def w(rt: Runtime) -> AsyncIterator[World]:
    async for world in make_world(rt):
        yield world


async def test_console_api_keeps_tenants_and_apps_apart(w: World) -> None:
    mine = await w.order()
    other_tenant = (await w.http.post("/v1/tenants", headers=w.admin, json={"name": "O"})).json()
    other_loc = (
        await w.http.post(
            "/v1/locations",
            headers=w.admin,
            json={"tenant_id": other_tenant["id"], "name": "O", "timezone": "UTC"},
        )
    ).json()
    other_app = (
        await w.http.post(
            "/v1/apps",
            headers=w.admin,
            json={
                "tenant_id": other_tenant["id"],
                "name": "Other",
                "kind": "channel",
                "location_ids": [other_loc["id"]],
            },
        )
    ).json()
    other = basic(other_app["key"], other_app["secret"])
    theirs = (
        await w.http.post(
            "/v1/orders",
            headers=other,
            json={
                "location_id": other_loc["id"],
                "type": "pickup",
                "items": [{"pos_id": "x", "name": "X", "quantity": 1, "unit_price": 100}],
            },
        )
    ).json()
    session = (await w.http.get("/dashboard/api/session", headers=w.auth)).json()
    assert [loc["id"] for loc in session["locations"]] == [w.location_id]
    admin = (await w.http.get("/dashboard/api/session", headers=w.admin)).json()
    assert {w.location_id, other_loc["id"]} <= {loc["id"] for loc in admin["locations"]}
    # Another tenant's location, order and endpoints are invisible to this app.
    r = await w.http.get(f"/dashboard/api/locations/{other_loc['id']}/orders", headers=w.auth)
    assert r.status_code == 404
    r = await w.http.get(f"/dashboard/api/orders/{theirs['id']}/timeline", headers=w.auth)
    assert r.status_code == 404
    r = await w.http.get(f"/dashboard/api/orders/{mine['id']}/timeline", headers=w.auth)
    assert r.status_code == 200 and [e["seq"] for e in r.json()["events"]] == [1]
    await w.http.post(
        f"/v1/apps/{other_app['id']}/endpoints", headers=other, json={"url": "https://x.test/h"}
    )
    assert (await w.http.get("/dashboard/api/endpoints", headers=w.auth)).json() == {
        "endpoints": []
    }
    everyone = (await w.http.get("/dashboard/api/endpoints", headers=w.admin)).json()
    assert [e["app_id"] for e in everyone["endpoints"]] == [other_app["id"]]
    board = (
        await w.http.get(f"/dashboard/api/locations/{w.location_id}/orders", headers=w.auth)
    ).json()
    assert [o["id"] for o in board["orders"]] == [mine["id"]]
    # Customers' tokens and no credentials are refused.
    token = (await w.http.post("/v1/users/u/tokens", headers=w.auth)).json()["access_token"]
    refused = await w.http.get(
        "/dashboard/api/session", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 403
    assert (await w.http.get("/dashboard/api/session")).status_code == 401
    # The scrape-time queries (outbox depth, oldest due message, POS timers) on this store.
    metrics = (await w.http.get("/metrics")).text
    assert 'ordercast_outbox_messages{status="pending"}' in metrics
    page = await w.http.get("/dashboard")
    assert page.status_code == 200 and "console.js" in page.text
    assert (await w.http.get("/dashboard/assets/console.js")).status_code == 200


async def test_board_stream_sends_snapshot_then_changes(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    async for runtime in open_runtime(f"sqlite:///{tmp_path}/stream.db"):
        async for live in start_live(runtime):
            first = await live.order()

            async def read(
                http: Any = live.http,
                auth: Any = live.auth,
                url: str = f"/dashboard/api/locations/{live.location_id}/stream",
            ) -> None:
                async with http.stream("GET", url, auth=auth) as response:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    event = None
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event:
                            seen.append((event, json.loads(line[6:])))
                            if len(seen) == 4:
                                return

            reader = asyncio.create_task(read())
            await wait_for(lambda: len(seen) >= 1, what="snapshot")
            second = await live.order()
            moves = f"/v1/orders/{first['id']}/transitions"
            await live.post(moves, {"to": "preparing"})
            await live.post(moves, {"to": "accepted"})  # lower rank: recorded, not applied
            await asyncio.wait_for(reader, 10)
    kinds = [kind for kind, _ in seen]
    assert kinds == ["snapshot", "change", "change", "change"]
    assert [o["id"] for o in seen[0][1]["orders"]] == [first["id"]]
    assert seen[1][1]["order"]["id"] == second["id"]
    assert [(e["seq"], e["type"]) for e in seen[2][1]["events"]] == [(2, "order.preparing")]
    stale = seen[3][1]
    assert stale["order"]["status"] == "preparing" and stale["order"]["version"] == 3
    assert [(e["seq"], e["stale"]) for e in stale["events"]] == [(3, True)]


def _need_browser() -> None:
    required = os.environ.get("ORDERCAST_REQUIRE_SERVICES") == "1"
    for what, ok in (
        ("chromium (apt-get install chromium)", Path(CHROMIUM).exists()),
        ("node", shutil.which("node") is not None),
        ("playwright-core (make node)", (NODE_DIR / "node_modules" / "playwright-core").is_dir()),
    ):
        if not ok:
            if required:
                pytest.fail(f"{what} is required (ORDERCAST_REQUIRE_SERVICES=1)")
            pytest.skip(f"{what} is not installed")


async def test_console_in_a_real_browser(tmp_path: Path) -> None:
    _need_browser()
    shots = DOCS if os.environ.get("ORDERCAST_SCREENSHOTS") == "1" else tmp_path
    good, bad = Receiver(), Receiver()
    failing = True

    def flaky(_item: Any) -> web.Response:
        return web.json_response({}, status=500 if failing else 200)

    bad.responder = flaky
    await good.start()
    await bad.start()
    async for runtime in open_runtime(f"sqlite:///{tmp_path}/browser.db"):
        await runtime.start_delivery()
        await start_stomp(runtime)
        async for live in start_live(runtime):
            for url in (good.url, bad.url):
                r = await live.http.post(
                    f"/v1/apps/{live.app['id']}/endpoints", auth=live.auth, json={"url": url}
                )
                assert r.status_code == 201, r.text
                if url == bad.url:
                    failing_endpoint = r.json()["id"]
            # One order whose message to the failing endpoint ends in the dead letter.
            dead = await live.order(consumer={"name": "Dead Letter"})

            dead_url = f"/v1/apps/{live.app['id']}/endpoints/{failing_endpoint}/messages"

            async def dead_lettered(
                http: Any = live.http, url: str = dead_url, auth: Any = live.auth
            ) -> bool:
                r = await http.get(url, params={"status": "failed"}, auth=auth)
                return len(r.json()["messages"]) == 1

            await wait_for(dead_lettered, what="a dead letter")
            failing = False  # the receiver is fixed: the replay will get through
            stomp_url = runtime.gateway.url("/ws")
            async with raw_client(stomp_url, ["v12.stomp"]) as screen:
                await screen.connect(live.app["key"], live.app["secret"])
                await screen.subscribe(f"/kds/{live.tenant_id}/{live.location_id}")
                proc = await asyncio.create_subprocess_exec(
                    "node",
                    "dashboard_browser.mjs",
                    cwd=NODE_DIR,
                    env={
                        **os.environ,
                        "OC_URL": live.base_url,
                        "OC_WS_PORT": str(live.ws_port),
                        "OC_KEY": live.app["key"],
                        "OC_SECRET": live.app["secret"],
                        "OC_LOCATION": live.location_id,
                        "OC_FAILING_ENDPOINT": failing_endpoint,
                        "SHOTS": str(shots),
                        "CHROMIUM": CHROMIUM,
                    },
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()[-3000:]
            results = json.loads(out.decode().strip().splitlines()[-1])
            # The replayed dead letter reached the (now healthy) receiver, same webhook-id.
            await wait_for(
                lambda oid=dead["id"]: any(oid in item.body.decode() for item in bad.received),
                what="the replayed message",
            )
    await good.stop()
    await bad.stop()
    assert results["errors"] == []
    assert len(results["appeared_ms"]) == 3 and len(results["moved_ms"]) == 3
    columns = dict(results["columns"])
    assert sorted(columns.values()) == ["accepted", "new", "preparing", "ready"]
    assert results["stayed_while_paused"] == "new"
    assert results["resumed"] == "+2 resumed"  # seq 2 and 3, read back after the reconnect
    assert results["timeline_seqs"] == [1, 2, 3, 4]  # created, preparing, ready, stale
    assert "200 delivered" in results["first_attempt"]
    assert any(f"/kds/{live.tenant_id}/{live.location_id}" in text for text in results["live"])
    assert results["failing_health"] in ("failing", "degraded")  # fixed by now
    assert results["dead_letters_before"] == 1
    assert results["replayed"].startswith("replayed (1)")
    assert any(f"/kds/{live.tenant_id}/{live.location_id}" in t for t in results["connections"])
    assert any(f"presence-r-{live.location_id}" in t for t in results["connections"])
    assert results["members"] == ["tablet-1"]
    for name in ("board", "timeline", "webhooks", "connections"):
        assert (shots / f"dashboard-{name}.png").stat().st_size > 10_000
