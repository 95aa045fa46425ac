"""Fan-out benchmark: ordercast vs a plain Node `ws` server vs a bare picows Pusher loop.

    .venv/bin/python -m bench fanout [--n 100,1000,10000] [--k 200] [--rate 200]

Each server runs as its own process; the Node `ws` load generator (bench/fanout/loadgen.mjs)
opens N Pusher subscribers on one channel, publishes K events at --rate per second and
reports delivered/s and trigger-to-client latency. ordercast is triggered through its Pusher
HTTP API (signed POST /apps/{id}/events) on a private (auth'd) channel; the baselines through
a publisher WebSocket on a public channel.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


def loadgen(cfg: dict[str, object]) -> dict[str, object]:
    out = subprocess.run(
        ["node", str(HERE / "loadgen.mjs"), json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(out.stderr[-2000:])
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def start_ordercast(tmp: str) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    http, ws = free_port(), free_port()
    env = {**os.environ, "ORDERCAST_LOG_LEVEL": "warning"}
    db = f"sqlite:///{tmp}/bench.db"
    exe = str(ROOT / ".venv" / "bin" / "ordercast")
    proc = subprocess.Popen(
        [exe, "run", "--http-port", str(http), "--ws-port", str(ws), "--database-url", db],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(http)
    wait_port(ws)
    demo = subprocess.run(
        [exe, "demo", "--env", "--database-url", db],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = dict(
        line.removeprefix("export ").split("=", 1) for line in demo.splitlines() if "=" in line
    )
    import sqlite3

    con = sqlite3.connect(f"{tmp}/bench.db")
    (app_id,) = con.execute("SELECT id FROM apps WHERE key = ?", (values["OC_KEY"],)).fetchone()
    con.close()
    return proc, {
        "url": f"ws://127.0.0.1:{ws}/app/{values['OC_KEY']}?protocol=7",
        "key": values["OC_KEY"],
        "secret": values["OC_SECRET"],
        "appId": app_id,
        "httpBase": f"http://127.0.0.1:{http}",
        "channel": "private-o-bench",
        "trigger": "http",
    }


def start_baseline(kind: str) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    port = free_port()
    if kind == "node-ws":
        cmd = ["node", str(HERE / "ws_server.mjs"), str(port)]
    else:
        cmd = [sys.executable, str(HERE / "picows_server.py"), str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, {
        "url": f"ws://127.0.0.1:{port}/app/bench?protocol=7",
        "key": "bench",
        "channel": "bench",
        "trigger": "ws",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench fanout")
    parser.add_argument("--n", default="100,1000,10000")
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--rate", type=int, default=200, help="events per second")
    parser.add_argument("--servers", default="ordercast,picows,node-ws")
    args = parser.parse_args(argv)
    link = HERE / "node_modules"
    if not link.exists():
        link.symlink_to(NODE_MODULES)
    results = []
    for server in args.servers.split(","):
        for n in (int(x) for x in args.n.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                proc, cfg = (
                    start_ordercast(tmp) if server == "ordercast" else start_baseline(server)
                )
                try:
                    k = args.k if n <= 1000 else max(10, args.k // 7)
                    res = loadgen({**cfg, "n": n, "k": k, "rate": args.rate, "serverPid": proc.pid})
                    res["server"] = server
                    idle = res.get("server_rss_idle_kb")
                    res["rss_per_conn_kb"] = round(idle / n, 1) if isinstance(idle, int) else None
                    results.append(res)
                    print(json.dumps(res), flush=True)
                finally:
                    proc.terminate()
                    proc.wait(10)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
