"""Crash test: a burst of 2,000 order changes, the server SIGKILLed mid-delivery and
restarted. Every committed event reaches the receiver, each under one ``webhook-id`` (a
duplicate delivery is allowed only with the same id), every signature verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from support.net import free_port
from support.webhooks import ADMIN, FAST_RETRIES, Receiver, wait_for

ORDERS = 400
MOVES = ("accepted", "preparing", "ready", "handed_off")  # + creation = 5 changes per order
ITEMS = [{"pos_id": "fries", "name": "Fries", "quantity": 1, "unit_price": 350}]
BIN = Path(sys.executable).parent / "ordercast"


def start_server(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen([str(BIN), "run"], env=env, stdout=out, stderr=subprocess.STDOUT)


async def healthy(base: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{base}/health") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def test_sigkill_mid_delivery_loses_nothing(tmp_path: Any) -> None:
    receiver = Receiver(delay=0.2)  # slow until the kill
    await receiver.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ORDERCAST_DATABASE_URL": f"sqlite:///{tmp_path}/crash.db",
        "ORDERCAST_HTTP_PORT": str(port),
        "ORDERCAST_WS_PORT": str(free_port()),
        "ORDERCAST_ADMIN_TOKEN": ADMIN,
        "ORDERCAST_DEMO": "false",
        "ORDERCAST_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32",
        "ORDERCAST_WEBHOOK_LEASE_SECONDS": "2",
        "ORDERCAST_WEBHOOK_RETRY_SCHEDULE": FAST_RETRIES,
        "ORDERCAST_WEBHOOK_POLL_SECONDS": "0.1",
    }
    log = tmp_path / "server.log"
    proc = start_server(env, log)
    try:
        await wait_for(lambda: healthy(base), 30, "server up")
        admin = {"Authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession(base_url=base) as http:

            async def post(path: str, body: dict[str, Any], auth: Any = None) -> Any:
                headers = admin if auth is None else auth
                async with http.post(path, json=body, headers=headers) as r:
                    assert r.status in (200, 201), await r.text()
                    return await r.json()

            tenant = await post("/v1/tenants", {"name": "Crash"})
            loc = await post("/v1/locations", {"tenant_id": tenant["id"], "name": "L"})
            app = await post(
                "/v1/apps",
                {
                    "tenant_id": tenant["id"],
                    "name": "POS",
                    "kind": "pos",
                    "location_ids": [loc["id"]],
                },
            )
            auth = {"Authorization": aiohttp.encode_basic_auth(app["key"], app["secret"])}
            ep = await post(
                f"/v1/apps/{app['id']}/endpoints",
                {"url": receiver.url, "max_concurrency": 2},
                auth,
            )
            gate = asyncio.Semaphore(16)

            async def one_order() -> None:
                async with gate:
                    order = await post(
                        "/v1/orders",
                        {"location_id": loc["id"], "type": "pickup", "items": ITEMS},
                        auth,
                    )
                    for to in MOVES:
                        await post(f"/v1/orders/{order['id']}/transitions", {"to": to}, auth)

            await asyncio.gather(*(one_order() for _ in range(ORDERS)))
        before_kill = len(receiver.received)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        total = ORDERS * (1 + len(MOVES))
        assert 0 < before_kill < total, f"not mid-delivery: {before_kill} of {total}"

        receiver.delay = 0.0
        proc = start_server(env, log)
        await wait_for(lambda: healthy(base), 30, "server up again")
        # Let the endpoint take more in flight now, so the rest drains quickly.
        async with (
            aiohttp.ClientSession(base_url=base) as http,
            http.patch(
                f"/v1/apps/{app['id']}/endpoints/{ep['id']}",
                json={"max_concurrency": 32},
                headers=auth,
            ) as r,
        ):
            assert r.status == 200, await r.text()
        await wait_for(
            lambda: len({r.json["data"]["event_id"] for r in receiver.received}) >= total,
            60,
            f"all {total} events delivered",
        )
        receiver.verify_all(ep["secret"])
        ids_by_event: dict[str, set[str]] = {}
        for item in receiver.received:
            ids_by_event.setdefault(item.json["data"]["event_id"], set()).add(item.webhook_id)
        assert len(ids_by_event) == total
        assert all(len(ids) == 1 for ids in ids_by_event.values())
        # Every event in the store arrived, and nothing else did.
        seqs: dict[str, list[int]] = {}
        for item in receiver.received:
            seqs.setdefault(item.json["data"]["order_id"], []).append(item.json["data"]["seq"])
        assert len(seqs) == ORDERS
        assert all(sorted(set(s)) == [1, 2, 3, 4, 5] for s in seqs.values())
        duplicates = len(receiver.received) - total
        print(f"delivered before kill: {before_kill}; duplicates after restart: {duplicates}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await receiver.stop()
