"""Cluster benchmark: subscribers spread over 2 nodes behind nginx vs 1 node behind nginx,
events triggered on one node through the Pusher HTTP API.

    .venv/bin/python -m bench cluster                       # 1 and 2 nodes, N=200, K=500
    .venv/bin/python -m bench cluster --nodes 2 --n 1000 --k 200 --rate 100 --runs 3

Each configuration starts a fresh PostgreSQL database, Redis (127.0.0.1:6379, its own key
prefix) and ``deploy/trial.py``'s cluster (the tested nginx configuration). ``loadgen.mjs``
opens N Pusher-protocol subscribers on one public channel through nginx (round robin: with 2
nodes, half land on each), learns which of them are on the trigger node, and runs two
phases: *peak* (K signed triggers to node 0, 8 in flight: delivered/s) and *paced* (K
triggers at ``--rate``/s: p50/p99 trigger → client latency, separately for subscribers on
the trigger node and on the other node — the difference is the Redis hop). It counts every
delivery by event index: ``lost`` and ``duplicated`` must be 0.

Needs nginx (Debian package), PostgreSQL and Redis on loopback, and tests/node's packages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
from pathlib import Path
from typing import Any

import httpx
from bench._db import bench_database

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
from trial import Trial  # noqa: E402

ADMIN = "bench-cluster-admin-token"


async def one_run(nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    async with bench_database("postgresql") as db:
        trial = Trial(
            db,
            args.redis_url,
            nodes,
            ordercast=str(Path(sys.executable).with_name("ordercast")),
            env={
                "ORDERCAST_ADMIN_TOKEN": ADMIN,
                "ORDERCAST_SECRET_KEY": "bench-cluster-secret-" + secrets.token_hex(8),
                "ORDERCAST_BUS_PREFIX": f"ocbench:{secrets.token_hex(4)}:",
                "ORDERCAST_DEMO": "false",
                "ORDERCAST_WEBHOOK_WORKER": "false",
            },
        )
        try:
            await trial.start()
            admin = {"Authorization": f"Bearer {ADMIN}"}
            async with httpx.AsyncClient(base_url=trial.http, timeout=10) as h:
                tenant = (await h.post("/v1/tenants", headers=admin, json={"name": "B"})).json()
                app = (
                    await h.post(
                        "/v1/apps",
                        headers=admin,
                        json={
                            "tenant_id": tenant["id"],
                            "name": "bench",
                            "kind": "channel",
                            "location_ids": [],
                        },
                    )
                ).json()
            config = {
                "wsUrl": f"{trial.ws}/app/{app['key']}?protocol=7",
                "probeUrl": f"{trial.nodes[0].ws}/app/{app['key']}?protocol=7",
                "key": app["key"],
                "appId": app["id"],
                "secret": app["secret"],
                "httpHost": "127.0.0.1",
                "httpPort": trial.nodes[0].http_port,
                "n": args.n,
                "k": args.k,
                "rate": args.rate,
                "concurrency": 8,
                "channel": "bench",
            }
            proc = await asyncio.create_subprocess_exec(
                "node",
                str(Path(__file__).with_name("loadgen.mjs")),
                json.dumps(config),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 600)
            lines = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
            result: dict[str, Any] = next(x for x in lines if x.get("ev") == "result")
            result["nodes"] = nodes
            return result
        finally:
            await trial.stop()


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v}"


def report(results: list[dict[str, Any]]) -> None:
    print(
        "| nodes | N (same/other) | peak delivered/s | lost | dup | paced p50 same / other ms"
        " | paced p99 same / other ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        p, q = r["peak"], r["paced"]
        lost = p["lost"] + q["lost"]
        dup = p["duplicated"] + q["duplicated"]
        print(
            f"| {r['nodes']} | {r['n']} ({r['subscribers_same']}/{r['subscribers_other']})"
            f" | {p['delivered_per_s']:,} | {lost} | {dup}"
            f" | {_fmt(q['same']['p50'])} / {_fmt(q['other']['p50'])}"
            f" | {_fmt(q['same']['p99'])} / {_fmt(q['other']['p99'])} |"
        )
    hops = [
        r["paced"]["other"]["p50"] - r["paced"]["same"]["p50"]
        for r in results
        if r["nodes"] > 1 and r["paced"]["other"]["p50"] is not None
    ]
    if hops:
        print(f"cross-node hop, paced p50 (other - same): median {statistics.median(hops):.2f} ms")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench cluster", description=__doc__)
    parser.add_argument("--nodes", default="1,2", help="comma-separated node counts")
    parser.add_argument("--n", type=int, default=200, help="subscribers")
    parser.add_argument("--k", type=int, default=500, help="events per phase")
    parser.add_argument("--rate", type=float, default=100.0, help="paced events per second")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    results = []
    for _ in range(args.runs):
        for nodes in [int(x) for x in args.nodes.split(",")]:
            result = asyncio.run(one_run(nodes, args))
            print(json.dumps(result), flush=True)
            results.append(result)
    report(results)
