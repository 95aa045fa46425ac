"""``ordercast worker``: webhook delivery in a process of its own, beside an ``ordercast run``
that only queues (ORDERCAST_WEBHOOK_WORKER=false).

On SQLite with the embedded bus (nothing crosses processes) the worker finds the queue on
its polls; on PostgreSQL + Redis two workers share it through their leases and wake on
the orders the server publishes (their polls are set far longer than the test waits, so
only the bus can have woken them). Every test checks what the receiver got: each change
of each order once, under one ``webhook-id``, signed."""

from __future__ import annotations

import asyncio
import secrets
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.live import Ordercast
from support.net import free_port
from support.services import REDIS_URL, fresh_postgres, need_service
from support.webhooks import Receiver, wait_for

ORDERS = 12
MOVES = ("accepted", "preparing", "ready", "handed_off")  # + creation = 5 changes per order
ITEMS = [{"pos_id": "fries", "name": "Fries", "quantity": 1, "unit_price": 350}]


def start_worker(
    node: Ordercast, log: Path, drop: tuple[str, ...] = (), **env: str
) -> subprocess.Popen[bytes]:
    """``ordercast worker`` on the node's database, bus and settings (less ``drop``)."""
    cmd = [sys.executable, "-m", "ordercast", "worker", "--database-url", node.database_url]
    full = {k: v for k, v in {**node.env, **env}.items() if k not in drop}
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=full, stdout=out, stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise AssertionError("the worker did not stop on SIGTERM") from None
    return proc.returncode


async def set_up(node: Ordercast, receiver: Receiver) -> tuple[dict[str, Any], str]:
    """A tenant, a location, a POS app with a webhook endpoint; (app, location id)."""
    admin = {"Authorization": f"Bearer {node.env['ORDERCAST_ADMIN_TOKEN']}"}
    async with httpx.AsyncClient(base_url=node.base, timeout=30) as http:
        tenant = (await http.post("/v1/tenants", json={"name": "Worker"}, headers=admin)).json()
        loc = (
            await http.post(
                "/v1/locations", json={"tenant_id": tenant["id"], "name": "L"}, headers=admin
            )
        ).json()
        app = (
            await http.post(
                "/v1/apps",
                json={
                    "tenant_id": tenant["id"],
                    "name": "POS",
                    "kind": "pos",
                    "location_ids": [loc["id"]],
                },
                headers=admin,
            )
        ).json()
        auth = httpx.BasicAuth(app["key"], app["secret"])
        r = await http.post(
            f"/v1/apps/{app['id']}/endpoints",
            json={"url": receiver.url, "max_concurrency": 4},
            auth=auth,
        )
        assert r.status_code == 201, r.text
        app["endpoint_secret"] = r.json()["secret"]
    return app, loc["id"]


async def rush(node: Ordercast, app: dict[str, Any], location_id: str) -> set[str]:
    """ORDERS orders moved through five changes each, concurrently; their ids."""
    auth = httpx.BasicAuth(app["key"], app["secret"])
    async with httpx.AsyncClient(base_url=node.base, auth=auth, timeout=30) as http:

        async def one() -> str:
            r = await http.post(
                "/v1/orders", json={"location_id": location_id, "type": "pickup", "items": ITEMS}
            )
            assert r.status_code == 201, r.text
            order_id: str = r.json()["id"]
            for to in MOVES:
                r = await http.post(f"/v1/orders/{order_id}/transitions", json={"to": to})
                assert r.status_code == 200, r.text
            return order_id

        return set(await asyncio.gather(*(one() for _ in range(ORDERS))))


def check_received(receiver: Receiver, orders: set[str], secret: str) -> None:
    """Each of the orders' five changes arrived exactly once, signed, and nothing else."""
    receiver.verify_all(secret)
    got = Counter((r.json["data"]["order_id"], r.json["data"]["seq"]) for r in receiver.received)
    expected = {(o, seq) for o in orders for seq in range(1, 2 + len(MOVES))}
    assert set(got) == expected
    assert all(n == 1 for n in got.values()), [k for k, n in got.items() if n > 1]
    assert len({r.webhook_id for r in receiver.received}) == len(receiver.received)


def delivered_total(prometheus_text: str) -> float:
    """The sum of ``ordercast_webhook_deliveries_total{outcome="delivered",…}`` samples."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in prometheus_text.splitlines()
        if line.startswith("ordercast_webhook_deliveries_total{") and 'outcome="delivered"' in line
    )


def delivered(receiver: Receiver, n: int) -> bool:
    return len(receiver.received) >= n


# ORDERCAST_OUTBOX_RENDER: the server renders the messages in each change's transaction,
# or keeps the change and the worker process renders them.
RENDER = pytest.mark.parametrize("render", ["commit", "worker"])
TABLES = ("webhook_messages", "outbox_changes")


@RENDER
async def test_sqlite_server_queues_worker_process_delivers(tmp_path: Path, render: str) -> None:
    receiver = Receiver()
    await receiver.start()
    node = Ordercast(
        f"sqlite:///{tmp_path}/w.db",
        tmp_path / "server.log",
        ORDERCAST_WEBHOOK_WORKER="false",
        ORDERCAST_OUTBOX_RENDER=render,
    )
    node.start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        app, location_id = await set_up(node, receiver)
        orders = await rush(node, app, location_id)
        total = len(orders) * (1 + len(MOVES))
        # The server alone delivers nothing: its queue waits (10 of its own polls).
        await asyncio.sleep(1.0)
        assert receiver.received == []
        # What waits: the messages (commit) or one row per change for the worker to render.
        with sqlite3.connect(tmp_path / "w.db") as db:
            kept = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES]
        assert kept == ([total, 0] if render == "commit" else [0, total])
        # The worker's own default poll on memory:// (50 ms; the node's 0.1 s left out).
        metrics_port = free_port()
        worker = start_worker(
            node,
            tmp_path / "worker.log",
            drop=("ORDERCAST_WEBHOOK_POLL_SECONDS",),
            ORDERCAST_WORKER_HTTP_PORT=str(metrics_port),
        )
        await wait_for(lambda: delivered(receiver, total), 30, f"{total} webhooks")
        check_received(receiver, orders, app["endpoint_secret"])
        # Later changes are found by the running worker as well.
        more = await rush(node, app, location_id)
        await wait_for(lambda: delivered(receiver, 2 * total), 30, f"{2 * total} webhooks")
        check_received(receiver, orders | more, app["endpoint_secret"])
        # Its own port: health, and the attempts it made (the server made none).
        worker_base = f"http://127.0.0.1:{metrics_port}"
        async with httpx.AsyncClient(base_url=worker_base, timeout=10) as http:
            health = await http.get("/health")
            assert health.json() == {"status": "ok", "role": "worker", "delivering": True}
            text = (await http.get("/metrics")).text
        async with httpx.AsyncClient(base_url=node.base, timeout=10) as http:
            server_text = (await http.get("/metrics")).text
        assert delivered_total(text) == 2 * total, text
        assert delivered_total(server_text) == 0
        assert 'ordercast_outbox_messages{status="pending"} 0.0' in text
        assert stop_worker(worker) == 0
        out = (tmp_path / "worker.log").read_text()
        assert "ordercast worker" in out and "every 0.05 s (webhooks)" in out, out
        assert "Traceback" not in out, out
    finally:
        if worker is not None:
            stop_worker(worker)
        node.stop()
        await receiver.stop()


@RENDER
async def test_postgres_two_workers_share_the_queue_and_wake_on_the_bus(
    tmp_path: Path, render: str
) -> None:
    need_service("Redis", "127.0.0.1", 6379)
    receiver = Receiver(delay=0.01)
    await receiver.start()
    async with fresh_postgres("ordercast_worker") as url:
        node = Ordercast(
            url,
            tmp_path / "server.log",
            ORDERCAST_WEBHOOK_WORKER="false",
            ORDERCAST_BUS_URL=REDIS_URL,
            ORDERCAST_BUS_PREFIX=f"octest:{secrets.token_hex(4)}:",
            ORDERCAST_OUTBOX_RENDER=render,
        )
        node.start()
        workers: list[subprocess.Popen[bytes]] = []
        try:
            app, location_id = await set_up(node, receiver)
            # Polls of 60 s: a worker that did not follow the bus would sit out every wait.
            for i in range(2):
                workers.append(
                    start_worker(
                        node, tmp_path / f"worker{i}.log", ORDERCAST_WEBHOOK_POLL_SECONDS="60"
                    )
                )
            await wait_for(
                lambda: all("wakes        on every order change" in (tmp_path / f"worker{i}.log")
                            .read_text() for i in range(2)),
                30,
                "both workers started",
            )  # fmt: skip
            orders = await rush(node, app, location_id)
            total = len(orders) * (1 + len(MOVES))
            await wait_for(lambda: delivered(receiver, total), 20, f"{total} webhooks")
            more = await rush(node, app, location_id)
            await wait_for(lambda: delivered(receiver, 2 * total), 20, f"{2 * total} webhooks")
            check_received(receiver, orders | more, app["endpoint_secret"])
            assert [stop_worker(w) for w in workers] == [0, 0]
        finally:
            for w in workers:
                stop_worker(w)
            node.stop()
            await receiver.stop()


def test_bad_settings_are_one_line_and_exit_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "ordercast", "worker", "--database-url"]
    env = {"PATH": "/usr/bin:/bin", "ORDERCAST_WEBHOOK_RETRY_SCHEDULE": "soon"}
    bad = subprocess.run(
        [*cmd, f"sqlite:///{tmp_path}/w.db"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2, bad.stderr
    assert "error: bad ORDERCAST_WEBHOOK_RETRY_SCHEDULE" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    url = subprocess.run(
        [*cmd, "mysql://nope"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert url.returncode == 2 and "error:" in url.stderr and "Traceback" not in url.stderr
