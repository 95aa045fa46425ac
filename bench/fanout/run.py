"""Fan-out benchmark: ordercast (Pusher and STOMP) against its baselines, one harness.

    .venv/bin/python -m bench fanout                                  # everything, 1 run each
    .venv/bin/python -m bench fanout --mode pusher --n 1000 --runs 3
    .venv/bin/python -m bench fanout --mode stomp --servers ordercast-stomp,rabbitmq

Needs ``cd tests/node && npm install`` (the load generator uses its ``ws``) and, for the
python-socketio baseline, ``pip install -e '.[bench]'``. Run on demand; never part of
``make test``.

Each server runs as its own process on loopback. ``loadgen.mjs`` (Node ``ws``, one process)
opens N subscribers on one channel, records the server's RSS before and after (idle), then
runs two phases on the same connections: *peak* (K events triggered as fast as the trigger
path accepts them; delivered/s) and *half* (events paced at half the peak delivered rate;
p50/p99 trigger-to-client latency). Both timestamps come from the load generator's clock.
Per phase it also reports ``bytes_per_msg`` (WebSocket payload bytes per delivered message)
and ``client_cpu`` / ``server_cpu``: [user, system] cores used by the load generator and the
server process while the phase ran (from ``/proc/PID/stat``): a client near 1.0 core is
the bottleneck, and the run is measuring the client. The load generator finds the marker
in the raw frame bytes for every protocol (no decoding or parsing per delivered message).
``--half-rate EV_PER_S`` paces every server's second phase at one fixed rate, and
``--half-rate-from SERVER`` at the rate SERVER (listed first) measured in the same round:
latency at equal load, next to latency at each server's own half peak. ``--pad CHARS``
(and ``--pad-for SERVER=CHARS``) sets the filler per triggered event, so that frame size
can be separated from server cost (e.g. the Pusher path at the STOMP path's frame size).
``--client-prof DIR`` / ``--server-prof DIR`` profile the peak phase (V8 profile of the load
generator; py-spy of a Python server); ``--loadgen PATH`` runs another loadgen.mjs.

Servers (``--servers``):

* ``ordercast`` — the full Pusher path: ``ordercast run`` (SQLite, memory bus); each
  subscriber is authorized on ``private-o-{order_id}`` through ordercast's own
  ``POST /api/v1/pusher/auth`` (key + a customer access token); each event is a REST order
  change ``POST /v1/orders/{id}/notes`` (storage transaction → bus → hub → Open Dining
  dialect → ``order_tracker`` frame encoded once → every socket).
* ``ordercast-api`` — same server and channel, events triggered through the Pusher HTTP API
  (signed ``POST /apps/{app_id}/events``): no storage, no dialect.
* ``picows`` — bare Pusher-protocol loop on picows (public channel, no auth, no storage):
  the ceiling. ``node-ws`` — plain Node ``ws`` broadcast. ``socketio`` — python-socketio
  5.18 on uvicorn + uvloop, ``emit`` to a room. These three are triggered by a publisher
  socket (no HTTP hop).
* ``ordercast-stomp`` — the STOMP gateway of the same ``ordercast run``: subscribers log
  in with a customer access token and subscribe to ``/order-changes/{user}/{order}``;
  events are the same REST notes.
* ``rabbitmq`` — RabbitMQ Web-STOMP (``ws://127.0.0.1:15674/ws``, guest/guest, default
  config) on ``/topic/bench``; a publisher socket SENDs.

Every run is bounded (connect deadline, per-phase deadline, a hard subprocess timeout);
a stalled peer is reported as ``hung`` with how far it got.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENV_BIN = ROOT / ".venv" / "bin"
PY = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable

PUSHER_SERVERS = ("ordercast", "ordercast-api", "picows", "node-ws", "socketio")
STOMP_SERVERS = ("ordercast-stomp", "rabbitmq")
DEFAULT_K = {100: 1000, 1000: 200, 10000: 30}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


def http_json(
    url: str, body: dict[str, Any] | None = None, auth: str | None = None
) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("content-type", "application/json")
    if auth:
        req.add_header("authorization", auth)
    with urllib.request.urlopen(req, timeout=30) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


class Server:
    """One server process under test and the load generator config that targets it."""

    def __init__(self, proc: subprocess.Popen[bytes] | None, cfg: dict[str, Any]) -> None:
        self.proc = proc
        self.cfg = cfg

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_ordercast(kind: str, tmp: str) -> Server:
    """``kind@DIR`` runs ordercast from DIR/src instead (A/B of two versions in one run)."""
    kind, _, src = kind.partition("@")
    http, ws = free_port(), free_port()
    env = {**os.environ, "ORDERCAST_LOG_LEVEL": "warning"}
    if src:
        env["PYTHONPATH"] = str(Path(src) / "src")
    db = f"sqlite:///{tmp}/bench.db"
    exe = str(VENV_BIN / "ordercast")
    proc = subprocess.Popen(
        [exe, "run", "--http-port", str(http), "--ws-port", str(ws), "--database-url", db],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(f"{tmp}/server.log", "wb"),  # noqa: SIM115 - closed with the tempdir
    )
    try:
        return _setup_ordercast(kind, proc, env, exe, db, http, ws)
    except BaseException:
        Server(proc, {}).stop()  # never leave a half-set-up server running
        raise


def _setup_ordercast(
    kind: str,
    proc: subprocess.Popen[bytes],
    env: dict[str, str],
    exe: str,
    db: str,
    http: int,
    ws: int,
) -> Server:
    wait_port(http, proc)
    wait_port(ws, proc)
    demo = subprocess.run(
        [exe, "demo", "--env", "--database-url", db],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    values = dict(
        line.removeprefix("export ").split("=", 1) for line in demo.splitlines() if "=" in line
    )
    base = f"http://127.0.0.1:{http}"
    basic = (
        "Basic " + base64.b64encode(f"{values['OC_KEY']}:{values['OC_SECRET']}".encode()).decode()
    )
    user = "6f1c2a52-9c1e-4d7a-9a55-0b3c6a1f0b01"
    order = http_json(
        f"{base}/v1/orders",
        {
            "location_id": values["OC_LOCATION"],
            "user_id": user,
            "items": [{"name": "Bench burger", "quantity": 1, "unit_price": 900}],
        },
        basic,
    )
    token = http_json(f"{base}/v1/users/{user}/tokens", {"ttl": 3600}, basic)["access_token"]
    order_id = order["id"]
    common = {
        "httpBase": base,
        "orderId": order_id,
        "restAuth": basic,
        "baseSeq": int(order.get("version") or order.get("seq") or 0),
    }
    if kind == "ordercast-stomp":
        return Server(
            proc,
            {
                **common,
                "proto": "stomp",
                "url": f"ws://127.0.0.1:{ws}/ws",
                "login": token,
                "passcode": "",
                "destination": f"/order-changes/{user}/{order_id}",
                "trigger": "rest",
            },
        )
    return Server(
        proc,
        {
            **common,
            "proto": "pusher",
            "url": f"ws://127.0.0.1:{ws}/app/{values['OC_KEY']}?protocol=7",
            "key": values["OC_KEY"],
            "secret": values["OC_SECRET"],
            "appId": values["OC_APP"],
            "channel": f"private-o-{order_id}",
            "authUrl": f"{base}/api/v1/pusher/auth",
            "authParams": {"key": values["OC_KEY"], "access_token": token},
            "trigger": "rest" if kind == "ordercast" else "pusher-api",
        },
    )


RABBIT_START = (
    # `rabbitmq-server -detached` as root goes through `su`, whose PAM limits give the node
    # a soft limit of 1,024 file descriptors: at N = 1,000 it fails with emfile, cancels
    # every subscription and stays broken until restarted. setpriv keeps our raised limit.
    "setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups bash -c "
    "'ulimit -n 20000; cd /var/lib/rabbitmq; export HOME=/var/lib/rabbitmq; "
    "/usr/lib/rabbitmq/bin/rabbitmq-server -detached'"
)


def start_rabbitmq() -> None:
    """Start RabbitMQ (with the raised fd limit) or, when it runs without Web-STOMP (a fresh
    machine: the plugin ships disabled), enable the plugin; then wait for port 15674."""
    try:
        wait_port(5672, None, timeout=1)
    except RuntimeError:
        subprocess.run(RABBIT_START, shell=True, check=False, timeout=60)
        wait_port(5672, None, timeout=90)
    subprocess.run(
        ["rabbitmq-plugins", "enable", "rabbitmq_web_stomp"],
        check=False,
        capture_output=True,
        timeout=120,
    )
    wait_port(15674, None, timeout=90)


def rabbit_fd_limit() -> int | None:
    pid = subprocess.run(
        ["pgrep", "-o", "beam.smp"], capture_output=True, text=True, check=False
    ).stdout.strip()
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None


def start_baseline(kind: str, tmp: str, n: int = 0) -> Server:
    if kind == "rabbitmq":
        try:
            wait_port(15674, None, timeout=2)
        except RuntimeError:
            start_rabbitmq()
        limit = rabbit_fd_limit()
        if limit is not None and limit < n + 200:
            raise RuntimeError(
                f"RabbitMQ's open-file limit is {limit}, too low for {n} subscribers (it "
                "fails with emfile); restart it with the raised limit: `rabbitmqctl stop`, "
                f"then: {RABBIT_START}"
            )
        pid = subprocess.run(
            ["pgrep", "-o", "beam.smp"], capture_output=True, text=True, check=False
        ).stdout.strip()
        return Server(
            None,
            {
                "proto": "stomp",
                "url": "ws://127.0.0.1:15674/ws",
                "login": "guest",
                "passcode": "guest",
                "destination": "/topic/bench",
                "trigger": "stomp",
                "pid": int(pid) if pid else None,
                "fdLimit": rabbit_fd_limit(),
            },
        )
    port = free_port()
    if kind == "node-ws":
        cmd = ["node", str(HERE / "ws_server.mjs"), str(port)]
    elif kind == "picows":
        cmd = [PY, str(HERE / "picows_server.py"), str(port)]
    elif kind == "socketio":
        cmd = [PY, str(HERE / "sio_server.py"), str(port)]
    else:
        raise SystemExit(f"unknown server {kind}")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(f"{tmp}/server.log", "wb"),  # noqa: SIM115
    )
    wait_port(port, proc)
    if kind == "socketio":
        return Server(
            proc,
            {
                "proto": "sio",
                "url": f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
                "channel": "bench",
                "trigger": "sio",
            },
        )
    return Server(
        proc,
        {
            "proto": "pusher",
            "url": f"ws://127.0.0.1:{port}/app/bench?protocol=7",
            "channel": "bench-room",
            "trigger": "ws",
        },
    )


def run_loadgen(
    cfg: dict[str, Any], hard_timeout: float, script: str | None = None
) -> dict[str, Any]:
    """The load generator's result line; a stall past ``hard_timeout`` is reported."""
    proc = subprocess.Popen(
        ["node", script or str(HERE / "loadgen.mjs"), json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=hard_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        return {"hung": f"load generator killed after {hard_timeout:.0f}s", "seen": lines}
    for line in reversed(out.splitlines()):
        if line.startswith('{"ev":"result"'):
            result: dict[str, Any] = json.loads(line)
            return result
    return {"hung": f"no result (exit {proc.returncode})", "stderr": err[-1000:]}


def one_run(
    kind: str, n: int, k: int, args: argparse.Namespace, half_rate: float | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            server = (
                start_ordercast(kind, tmp)
                if kind.startswith("ordercast")
                else start_baseline(kind, tmp, n)
            )
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            return {"server": kind, "n": n, "k": k, "hung": f"server did not start: {exc}"}
        try:
            pid = server.proc.pid if server.proc is not None else server.cfg.pop("pid", None)
            cfg = {
                **server.cfg,
                "n": n,
                "k": k,
                "serverPid": pid,
                "connectTimeoutMs": args.connect_timeout * 1000,
                "phaseTimeoutMs": args.phase_timeout * 1000,
                "half": not args.no_half,
            }
            pad = dict(item.split("=", 1) for item in args.pad_for).get(kind, args.pad)
            if pad is not None:
                cfg["pad"] = int(pad)
            if half_rate:
                cfg["halfRate"] = half_rate
            hard = args.connect_timeout + 2 * args.phase_timeout + 30
            if args.client_prof:
                cfg["profile"] = str(Path(args.client_prof) / f"{kind.replace('/', '_')}-{n}")
            if args.server_prof and server.proc is not None:
                cfg["serverProfile"] = str(
                    Path(args.server_prof) / f"{kind.replace('/', '_')}-{n}-server"
                )
                cfg["pyspy"] = str(VENV_BIN / "py-spy")
            result = run_loadgen(cfg, hard, args.loadgen)
            if server.proc is not None and server.proc.poll() is not None:
                result["server_exit"] = server.proc.returncode
            return {"server": kind, **result, "n": n, "k": k}
        finally:
            server.stop()


def median_of(runs: list[dict[str, Any]], path: tuple[str, str]) -> float | None:
    values = [r[path[0]][path[1]] for r in runs if path[0] in r and r[path[0]].get(path[1])]
    return statistics.median(values) if values else None


def summarize(kind: str, n: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "peak" in r]
    return {
        "server": kind,
        "n": n,
        "k": runs[0].get("k"),
        "runs": len(runs),
        "hung": [r["hung"] for r in runs if "hung" in r] or None,
        "delivered": [f"{r['peak']['delivered']}/{r['peak']['expected']}" for r in ok],
        "peak_delivered_per_s": median_of(ok, ("peak", "delivered_per_s")),
        "peak_runs": [r["peak"]["delivered_per_s"] for r in ok],
        "trigger_per_s": median_of(ok, ("peak", "trigger_per_s")),
        "half_rate_events_per_s": median_of(ok, ("half", "rate_events_per_s")),
        "half_p50_ms": median_of(ok, ("half", "p50_ms")),
        "half_p99_ms": median_of(ok, ("half", "p99_ms")),
        "half_complete": [r["half"]["complete"] for r in ok if "half" in r],
        "rss_per_idle_conn_kb": statistics.median(
            [r["rss_per_idle_conn_kb"] for r in ok if r.get("rss_per_idle_conn_kb") is not None]
            or [0]
        )
        or None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench fanout", description=__doc__)
    parser.add_argument("--mode", choices=("pusher", "stomp", "all"), default="all")
    parser.add_argument("--servers", default=None, help="comma list; default: all of --mode")
    parser.add_argument("--n", default="100,1000,10000")
    parser.add_argument("--k", type=int, default=None, help="default 1000/200/30 by N")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--connect-timeout", type=int, default=120, help="seconds")
    parser.add_argument("--phase-timeout", type=int, default=60, help="seconds per phase")
    parser.add_argument(
        "--pad",
        type=int,
        default=None,
        help="filler characters per triggered event (default 60): e.g. 1100 gives the "
        "baselines frames as large as a STOMP order message, to separate frame size from "
        "server cost",
    )
    parser.add_argument(
        "--pad-for",
        action="append",
        default=[],
        metavar="SERVER=CHARS",
        help="--pad for one server only (repeatable): e.g. ordercast=1100 makes the Pusher "
        "path's frames as large as the STOMP path's, to compare the two gateways at equal bytes",
    )
    parser.add_argument("--no-half", action="store_true", help="skip the half-rate phase")
    parser.add_argument(
        "--half-rate",
        type=float,
        default=None,
        metavar="EV_PER_S",
        help="pace every server's second phase at this many events/s instead of half its own "
        "peak (latency at equal load)",
    )
    parser.add_argument(
        "--half-rate-from",
        default=None,
        metavar="SERVER",
        help="pace the later servers of each round at the half rate SERVER measured in that "
        "round (list SERVER first), e.g. picows: every server at the bare loop's half peak",
    )
    parser.add_argument("--out", default=None, help="append JSON lines here")
    parser.add_argument(
        "--loadgen",
        default=None,
        metavar="PATH",
        help="another loadgen.mjs (A/B of the harness itself; it must sit at bench/fanout/ "
        "of a tree whose tests/node has node_modules)",
    )
    parser.add_argument(
        "--client-prof",
        default=None,
        metavar="DIR",
        help="write a V8 CPU profile of the load generator's peak phase per run into DIR",
    )
    parser.add_argument(
        "--server-prof",
        default=None,
        metavar="DIR",
        help="py-spy (raw collapsed stacks) of Python servers during the peak phase, into DIR",
    )
    args = parser.parse_args(argv)
    if args.servers:
        servers = args.servers.split(",")
    else:
        servers = list(PUSHER_SERVERS if args.mode != "stomp" else ())
        servers += list(STOMP_SERVERS if args.mode != "pusher" else ())
    if not (ROOT / "tests" / "node" / "node_modules" / "ws").exists():
        raise SystemExit("run `cd tests/node && npm install` first (the load generator uses ws)")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} uptime: {os.getloadavg()}", flush=True)
    summaries = []
    for n in (int(x) for x in args.n.split(",")):
        k = args.k or DEFAULT_K.get(n, 200)
        # Rounds: every server once per round, so a change in machine load hits all alike.
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in servers}
        for _ in range(args.runs):
            half_rate = args.half_rate
            for kind in servers:
                res = one_run(kind, n, k, args, half_rate)
                if kind == args.half_rate_from and "half" in res:
                    half_rate = res["half"]["rate_events_per_s"]
                res["load"] = os.getloadavg()[0]
                runs[kind].append(res)
                print(json.dumps(res), flush=True)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(res) + "\n")
                time.sleep(1)
        for kind in servers:
            summary = summarize(kind, n, runs[kind])
            summaries.append(summary)
            print("SUMMARY " + json.dumps(summary), flush=True)
    print(f"# done; load average now {os.getloadavg()}", flush=True)
    print(json.dumps(summaries, indent=1))


if __name__ == "__main__":
    main()
