"""STOMP fan-out benchmark: ordercast's STOMP gateway vs RabbitMQ Web-STOMP, same client.

    .venv/bin/python bench/stomp_fanout.py                       # N = 100, 1000, 10000
    .venv/bin/python bench/stomp_fanout.py --n 1000 --k 200 --runs 3 --no-rabbit

For each N, a Node `ws` client (bench/stomp_fanout.mjs) opens N STOMP connections that all
subscribe to one destination; then K messages (~130-byte JSON bodies carrying the publish
time) are published and the client counts deliveries and latencies.

* ordercast: the real server path minus storage. One process runs the gateway (picows,
  uvloop) with a KDS app logged in by key+secret on ``/kds/{tenant}/{venue}``-like
  ``/venue/{tenant}/{venue}``; messages are venue-change bus messages published on the
  in-memory bus, going through the hub, the dialect, encode-once and the splice.
* RabbitMQ Web-STOMP (``rabbitmq-plugins enable rabbitmq_web_stomp``, default config,
  ws://127.0.0.1:15674/ws, guest/guest): subscribers on ``/topic/bench``; the Node client
  publishes the K messages with SEND over one more socket.

Delivered/s = delivered / (last receive - first publish). Median of ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ordercast.gateway.stomp import StompConfig  # noqa: E402
from ordercast.ports import BusMessage  # noqa: E402
from ordercast.protocols.stomp import SessionConfig  # noqa: E402
from ordercast.runtime import Runtime  # noqa: E402
from ordercast.settings import Settings  # noqa: E402

CLIENT = ROOT / "bench" / "stomp_fanout.mjs"
DEFAULT_K = {100: 200, 1000: 200, 10000: 30}


async def run_client(config: dict[str, Any], on_ready: Any = None) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(CLIENT),
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=1 << 20,
    )
    assert proc.stdout is not None
    result: dict[str, Any] = {}
    try:
        while True:
            line = await proc.stdout.readline()
            if not line:
                assert proc.stderr is not None
                err = (await proc.stderr.read()).decode()[-2000:]
                raise RuntimeError(f"load client exited early: {err}")
            event = json.loads(line)
            if event["ev"] == "ready" and on_ready is not None:
                await on_ready()
            elif event["ev"] == "result":
                result = event
                break
            elif event["ev"] == "error":
                print("  client:", event, file=sys.stderr)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    return result


async def bench_ordercast(n: int, k: int, timeout_ms: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{tmp}/bench.db", admin_token="x" * 20)
        rt = await Runtime.open(settings)
        try:
            rt.stomp.config = StompConfig(session=SessionConfig(max_frame_size=64 * 1024))
            await rt.gateway.start(host="127.0.0.1", port=0)
            tenant = await rt.directory.create_tenant("Bench")
            location = await rt.directory.create_location(
                tenant_id=tenant.id, name="Venue", timezone="UTC", settings={}
            )
            app = await rt.directory.create_app(
                tenant_id=tenant.id, name="KDS", kind="kds", location_ids=[location.id]
            )
            pad = "x" * 40

            async def publish() -> None:
                for i in range(k):
                    loc = {
                        "id": location.id,
                        "tenant_id": tenant.id,
                        "name": "Venue",
                        "timezone": "UTC",
                        "settings": {"t": int(time.time() * 1000), "i": i, "pad": pad},
                        "updated_at": str(i),
                    }
                    await rt.bus.publish(BusMessage("location", {"location": loc}))
                    await asyncio.sleep(0)

            return await run_client(
                {
                    "url": rt.gateway.url("/ws"),
                    "login": app.app.key,
                    "passcode": app.secret,
                    "destination": f"/venue/{tenant.id}/{location.id}",
                    "n": n,
                    "k": k,
                    "publish": False,
                    "timeoutMs": timeout_ms,
                },
                on_ready=publish,
            )
        finally:
            await rt.close()


async def bench_rabbit(n: int, k: int, timeout_ms: int) -> dict[str, Any]:
    return await run_client(
        {
            "url": "ws://127.0.0.1:15674/ws",
            "login": "guest",
            "passcode": "guest",
            "destination": "/topic/bench",
            "n": n,
            "k": k,
            "publish": True,
            "pad": 80,
            "timeoutMs": timeout_ms,
        }
    )


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    complete = [r for r in results if r.get("delivered") == r.get("expected")]
    rates = [r["rate"] or 0 for r in results]
    return {
        "runs": len(results),
        "complete_runs": len(complete),
        "delivered/s (median)": int(statistics.median(rates)) if rates else None,
        "p50 ms (median)": statistics.median([r["p50"] for r in results if r["p50"] is not None])
        if any(r["p50"] is not None for r in results)
        else None,
        "p99 ms (median)": statistics.median([r["p99"] for r in results if r["p99"] is not None])
        if any(r["p99"] is not None for r in results)
        else None,
        "delivered": [f"{r['delivered']}/{r['expected']}" for r in results],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--k", type=int, default=None, help="messages (default 200; 30 at 10k)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=60, help="seconds per run")
    parser.add_argument("--no-rabbit", action="store_true")
    args = parser.parse_args()
    for n in args.n:
        k = args.k or DEFAULT_K.get(n, 200)
        targets = [("ordercast", bench_ordercast)]
        if not args.no_rabbit:
            targets.append(("rabbitmq-web-stomp", bench_rabbit))
        for name, fn in targets:
            results = []
            for _ in range(args.runs):
                results.append(await fn(n, k, args.timeout * 1000))
                await asyncio.sleep(1)
            print(json.dumps({"server": name, "n": n, "k": k, **summary(results)}), flush=True)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
