"""Webhook delivery benchmark: signed deliveries per second from the outbox to a receiver.

    .venv/bin/python bench/webhooks.py                    # SQLite and PostgreSQL
    .venv/bin/python bench/webhooks.py --db sqlite --changes 1000 --endpoints 8 --runs 3

Setup (not timed): a receiver in another process (by default a minimal HTTP/1.1 server
on uvloop + httptools answering 204 to every request; Node ``http`` with ``--receiver
node``, aiohttp.web with ``--receiver aiohttp``), one location with ``--endpoints`` webhook
endpoints (ordercast dialect, max_concurrency 64 each) all pointing at it, and
``--changes`` order changes written through OrderService with the worker stopped, so the
outbox holds changes x endpoints messages. Timed: start the delivery worker and wait until
no message is pending — every message claimed, signed (Standard Webhooks HMAC), POSTed,
its attempt recorded and the message marked delivered. Deliveries/s = messages / elapsed;
median of ``--runs``. PostgreSQL runs on a fresh database (127.0.0.1:5432, user postgres)
that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _db import bench_database  # bench/_db.py (these scripts run with bench/ on sys.path)

# The receivers do the least a real HTTP/1.1 server can, so they take little of the 2 shared
# cores from the worker and the database; their CPU per request is printed.
#
# Default (``httptools``): a loopback TCP server on uvloop; every request is parsed by
# llhttp (httptools, the parser uvicorn uses), its body discarded, and when the request is
# complete an empty ``204 No Content`` is written on the same keep-alive connection (the
# connection is closed after it if the request did not allow keep-alive, or on a parse
# error). Nothing is verified or stored. Measured ~12-18 us CPU per request here, against
# ~22-35 us for Node's http module once warm (60-75 us on its first 8,000 requests).
HTTPTOOLS_RECEIVER = """
import asyncio, sys, httptools, uvloop
NO_CONTENT = b"HTTP/1.1 204 No Content\\r\\n\\r\\n"
class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()
    def on_message_complete(self):
        self.transport.write(NO_CONTENT)
        if not self.parser.should_keep_alive():
            self.transport.close()
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Receiver, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
uvloop.run(main())
"""

# Node's http module: parses the request, reads and discards the body, answers 204.
NODE_RECEIVER = """
const http = require('http');
http.createServer((req, res) => { req.resume(); req.on('end', () => {
  res.writeHead(204); res.end(); }); }).listen(+process.argv[1], '127.0.0.1');
"""

AIOHTTP_RECEIVER = """
import sys
from aiohttp import web
async def h(request):
    await request.read()
    return web.Response(status=204)
app = web.Application(); app.router.add_post('/{tail:.*}', h)
web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None, access_log=None)
"""


# An extra delivery worker process (``--workers`` > 1, PostgreSQL only): opens the same
# database, waits for "go" on stdin (so its start-up is not timed), then delivers until killed.
EXTRA_WORKER = """
import asyncio, sys
import uvloop
from ordercast.runtime import Runtime
from ordercast.settings import Settings
async def main():
    rt = await Runtime.open(Settings(database_url=sys.argv[1], admin_token="bench-admin-token",
        webhook_allow_cidrs="127.0.0.1/32", webhook_max_in_flight=1024, log_level="warning"))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await rt.start_delivery()
    await asyncio.Event().wait()
uvloop.run(main())
"""


def proc_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc; 0 if unreadable)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def pg_backends(dbname: str) -> list[int]:
    """PostgreSQL backend processes serving ``dbname`` (their cmdline names the database)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"postgres: ") and f" {dbname} ".encode() in cmd:
                pids.append(int(entry.name))
    return pids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_receiver(kind: str, port: int) -> subprocess.Popen[bytes]:
    if kind == "node" and shutil.which("node"):
        return subprocess.Popen(["node", "-e", NODE_RECEIVER, str(port)])
    if kind == "httptools":
        return subprocess.Popen([sys.executable, "-c", HTTPTOOLS_RECEIVER, str(port)])
    return subprocess.Popen([sys.executable, "-c", AIOHTTP_RECEIVER, str(port)])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"receiver did not start on port {port}")


async def one_run(
    db_url: str,
    receiver_url: str,
    changes: int,
    endpoints: int,
    profile: str | None = None,
    workers: int = 1,
    receiver_pid: int = 0,
) -> dict[str, Any]:
    from ordercast.domain.access import Admin, AppPrincipal
    from ordercast.runtime import Runtime
    from ordercast.settings import Settings

    settings = Settings(
        database_url=db_url,
        admin_token="bench-admin-token",
        webhook_allow_cidrs="127.0.0.1/32",
        webhook_max_in_flight=1024,
        log_level="warning",
    )
    rt = await Runtime.open(settings)
    try:
        assert rt.webhooks is not None
        t = await rt.directory.create_tenant("bench")
        loc = await rt.directory.create_location(
            tenant_id=t.id, name="bench", timezone="UTC", settings={}
        )
        app = (
            await rt.directory.create_app(
                tenant_id=t.id, name="bench", kind="channel", location_ids=[loc.id]
            )
        ).app
        for i in range(endpoints):
            await rt.webhooks.create_endpoint(
                Admin(), app.id, url=f"{receiver_url}/{i}", max_concurrency=64
            )
        who = AppPrincipal(app.id, t.id, "channel", frozenset([loc.id]))
        item = {"pos_id": "fries", "name": "Fries", "quantity": 1, "unit_price": 350}
        gate = asyncio.Semaphore(8)
        per_order = 5
        moves = ("accepted", "preparing", "ready", "completed")

        async def one_order() -> None:
            async with gate:
                o = await rt.orders.create(
                    who, {"location_id": loc.id, "type": "pickup", "items": [item]}
                )
                for to in moves:
                    await rt.orders.transition(who, o.id, to=to)

        fill_started = time.perf_counter()
        await asyncio.gather(*(one_order() for _ in range(max(1, changes // per_order))))
        fill = time.perf_counter() - fill_started
        total = await rt.webhooks.outbox.open_count()
        extra = [
            subprocess.Popen(  # noqa: ASYNC220 - setup, not timed
                [sys.executable, "-c", EXTRA_WORKER, db_url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for _ in range(workers - 1)
        ]
        for proc in extra:
            assert proc.stdout is not None
            await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        prof = cProfile.Profile() if profile else None
        if prof is not None:
            prof.enable()
        dbname = db_url.rsplit("/", 1)[1] if db_url.startswith("postgresql") else ""
        backends = pg_backends(dbname) if dbname else []
        others_started = proc_cpu([receiver_pid]), proc_cpu(backends)
        started = time.perf_counter()
        cpu_started = time.process_time()
        for proc in extra:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        worker = await rt.start_delivery()
        # Cheap in-process wait first (not a DB query every few ms competing with the
        # worker), then the database decides: the clock stops when nothing is open.
        while not extra and worker.stats.delivered + worker.stats.failed_attempts < total:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        while await rt.webhooks.outbox.open_count() > 0:  # noqa: ASYNC110 - polling the DB
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        for proc in extra:
            proc.kill()
            proc.wait()
        cpu = time.process_time() - cpu_started
        receiver_cpu = proc_cpu([receiver_pid]) - others_started[0]
        pg_cpu = proc_cpu(backends) - others_started[1]
        if prof is not None and profile:
            prof.disable()
            prof.dump_stats(profile)
        failed = worker.stats.failed_attempts
        return {
            "messages": total,
            "seconds": elapsed,
            "per_second": total / elapsed,
            "failed_attempts": failed,
            "enqueue_per_second": total / fill,
            "cpu_share": cpu / elapsed,
            "cpu_us_per_delivery": cpu / total * 1e6,
            "receiver_us_per_delivery": receiver_cpu / total * 1e6,
            "pg_us_per_delivery": pg_cpu / total * 1e6,
        }
    finally:
        await rt.close()


async def bench(db: str, args: argparse.Namespace, receiver_url: str) -> list[dict[str, Any]]:
    results = []
    for _ in range(args.runs):
        async with bench_database(db) as url:
            results.append(
                await one_run(
                    url,
                    receiver_url,
                    args.changes,
                    args.endpoints,
                    args.profile,
                    args.workers if db == "postgresql" else 1,
                    args.receiver_pid,
                )
            )
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--changes", type=int, default=1000, help="order changes (5 per order)")
    p.add_argument("--endpoints", type=int, default=8)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--receiver", choices=["httptools", "node", "aiohttp"], default="httptools")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="delivery worker processes (PostgreSQL only; extra ones are subprocesses)",
    )
    p.add_argument("--profile", metavar="FILE", help="cProfile the drain (last run) into FILE")
    args = p.parse_args()
    port = free_port()
    proc = start_receiver(args.receiver, port)
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/hook"
        args.receiver_pid = proc.pid
        dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:  # pragma: no cover
            runner = asyncio.run
        for db in dbs:
            results = runner(bench(db, args, url))
            rates = [r["per_second"] for r in results]
            print(
                f"{db:10s} messages={results[0]['messages']} "
                f"deliveries/s median={statistics.median(rates):,.0f} "
                f"runs={[round(x) for x in rates]} "
                f"failed_attempts={sum(r['failed_attempts'] for r in results)} "
                f"worker_cpu={statistics.median(r['cpu_share'] for r in results):.0%} of a core, "
                f"{statistics.median(r['cpu_us_per_delivery'] for r in results):.0f} us/delivery "
                f"[{', '.join(str(round(r['cpu_us_per_delivery'])) for r in results)}]; "
                f"receiver {statistics.median(r['receiver_us_per_delivery'] for r in results):.0f}"
                f" us/delivery"
                + (
                    f", PostgreSQL backends "
                    f"{statistics.median(r['pg_us_per_delivery'] for r in results):.0f} us/delivery"
                    if db == "postgresql"
                    else ""
                )
                + " "
                f"(enqueue through OrderService: "
                f"{statistics.median(r['enqueue_per_second'] for r in results):,.0f} messages/s)",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(5)


if __name__ == "__main__":
    main()
