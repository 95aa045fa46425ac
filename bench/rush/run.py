"""Dinner-rush benchmark: many orders, a few watchers each, on every transport at once.

    .venv/bin/python -m bench rush                                  # SQLite, default world
    .venv/bin/python -m bench rush --db postgresql --rates 100,200,400,600
    .venv/bin/python -m bench rush --locations 200 --customers 20000 --step-seconds 20

The world (built over the public REST API before anything is timed): ``--tenants`` tenants,
``--locations`` locations spread over them, and per location a POS app (an ``ordatic``
endpoint), a rider app (an ``rbi`` endpoint: RBI's ORDER_EVENT statuses; an ``rbi`` endpoint
on a *POS* app would switch the location to the price/commit/fire flow, which this bench
does not answer) and a loyalty app (a ``doshii`` endpoint, subscribed to every order of the
location as a Doshii partner would be), all three on one local webhook receiver
(``receiver.mjs``, another Node process); ``--kds`` STOMP screens per location on
``/kds/{tenant}/{venue}`` (logged in with the POS app's key and secret); ``--customers``
orders placed by as many customers, each followed by its customer's socket: Pusher
``private-o-{order}`` through ordercast's auth endpoint, or (``--stomp-share``) STOMP
``/order-changes/{user}/{order}``.

Timed: ``loadgen.mjs`` (Node, one process) steps the change rate R through ``--rates``;
each step sends R changes per second for ``--step-seconds`` from ``--pos-clients``
keep-alive HTTP clients: the next lifecycle step of an order (accepted, a note, preparing,
ready, then a courier job with its statuses, or collection, or a cancellation), each order's
steps one after another. Latency is the time from the REST response of a change to the
receipt of a message it caused, per transport: sockets by the message's order and ``seq``,
webhooks by order (the latest change of that order sent before the receipt; one order's
steps are seconds apart). p50/p99/max per step, the server's CPU (cores) and RSS per step.

Checked after the run, every message: the event log is read back over REST and rendered
with the dialects (pure functions, not the gateways or the outbox) into what each
subscriber should have got; per subscriber and order every expected message must have
arrived once (webhooks: once per ``webhook-id``), none unexpected.

The knee is the highest step whose p99 stays under 100 ms on the sockets and 1 s on the
webhooks with nothing lost. ``--limits`` (default on) measures, in the same run, what this
box could do for the same work: the bare picows loop's CPU per delivered socket message
(``bench fanout``'s baseline, N = 1,000) and a bare-driver loop writing the same rows per
change that ordercast wrote (``bare_writes.py``: same schema, same durability settings,
group commit); their sum per change bounds R, and the knee is reported as a fraction of it.
Results: one JSON line per run in ``--out``; ``report.py`` prints the tables.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.fanout.run import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENV_BIN = ROOT / ".venv" / "bin"
PY = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
ADMIN = "rush-admin-token"
SOCKET_P99_MS = 100.0
WEBHOOK_P99_MS = 1000.0


# -- HTTP: keep-alive connections, one per thread ---------------------------------------------
class Api:
    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def call(self, method: str, path: str, body: Any = None, auth: str | None = None) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"content-type": "application/json"}
        if auth:
            headers["authorization"] = auth
        data = None if body is None else json.dumps(body)
        for attempt in range(3):
            try:
                conn.request(method, path, data, headers)
                resp = conn.getresponse()
                text = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                if attempt == 2:
                    raise
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {text[:300]!r}")
        return json.loads(text) if text else None


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def parallel(fn: Callable[[Any], Any], items: list[Any], width: int = 16) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(width) as pool:
        return list(pool.map(fn, items))


# -- processes --------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def database(kind: str, tmp: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/rush.db"
        return
    import asyncio

    sys.path.insert(0, str(ROOT / "bench"))
    from _db import bench_database  # type: ignore[import-not-found]

    # One loop for both ends: asyncio.run would close its loop after __aenter__, finalizing
    # the context manager's generator (its ``finally`` drops the database at once).
    loop = asyncio.new_event_loop()
    cm = bench_database("postgresql")
    url = loop.run_until_complete(cm.__aenter__())
    try:
        yield url
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()


# -- the world --------------------------------------------------------------------------------
def build_world(api: Api, args: argparse.Namespace, receiver: int) -> dict[str, Any]:
    admin = f"Bearer {ADMIN}"
    tenants = [
        api.call("POST", "/v1/tenants", {"name": f"T{i}"}, admin)["id"] for i in range(args.tenants)
    ]
    channel: dict[str, dict[str, Any]] = {}
    locs: list[dict[str, Any]] = []
    for i in range(args.locations):
        t = tenants[i % len(tenants)]
        loc = api.call(
            "POST", "/v1/locations", {"tenant_id": t, "name": f"L{i}", "timezone": "UTC"}, admin
        )
        locs.append({"id": loc["id"], "tenant": t})
    for t in tenants:
        ids = [loc["id"] for loc in locs if loc["tenant"] == t]
        channel[t] = api.call(
            "POST",
            "/v1/apps",
            {"tenant_id": t, "name": "Ordering app", "kind": "channel", "location_ids": ids},
            admin,
        )
    endpoints: list[dict[str, Any]] = []

    def location_apps(loc: dict[str, Any]) -> None:
        for kind, dialect in (("pos", "ordatic"), ("rider", "rbi"), ("loyalty", "doshii")):
            app = api.call(
                "POST",
                "/v1/apps",
                {
                    "tenant_id": loc["tenant"],
                    "name": f"{kind} {loc['id']}",
                    "kind": kind,
                    "location_ids": [loc["id"]],
                },
                admin,
            )
            loc[kind] = app
            loc[f"{kind}_auth"] = basic(app["key"], app["secret"])
            with lock:
                index = len(endpoints)
                endpoints.append(
                    {"app": app["id"], "kind": kind, "dialect": dialect, "loc": loc["id"]}
                )
            api.call(
                "POST",
                f"/v1/apps/{app['id']}/endpoints",
                {"url": f"http://127.0.0.1:{receiver}/wh/{index}", "dialect": dialect},
                admin,
            )

    lock = threading.Lock()
    parallel(location_apps, locs)
    users = [f"rush-user-{i}" for i in range(args.customers)]

    def place(i: int) -> dict[str, Any]:
        loc = locs[i % len(locs)]
        auth = basic(channel[loc["tenant"]]["key"], channel[loc["tenant"]]["secret"])
        order = api.call(
            "POST",
            "/v1/orders",
            {
                "location_id": loc["id"],
                "type": "delivery" if i % 4 != 1 else "pickup",
                "user_id": users[i],
                "items": [
                    {
                        "pos_id": "burger",
                        "name": "Cheeseburger",
                        "quantity": 2,
                        "unit_price": 899,
                        "options": [
                            {"name": "Extras", "variants": [{"name": "Bacon", "price": 150}]}
                        ],
                    },
                    {"pos_id": "fries", "name": "Fries", "quantity": 1, "unit_price": 349},
                ],
                "consumer": {"name": f"Customer {i}", "phone": "+15550100"},
            },
            auth,
        )
        token = api.call("POST", f"/v1/users/{users[i]}/tokens", {}, auth)["access_token"]
        api.call("POST", f"/v1/orders/{order['id']}/subscription", None, loc["loyalty_auth"])
        return {
            "id": order["id"],
            "user": users[i],
            "token": token,
            "loc": loc["id"],
            "tenant": loc["tenant"],
            "proto": "stomp" if i % 100 < round(args.stomp_share * 100) else "pusher",
        }

    orders = parallel(place, list(range(args.customers)))
    kds = [
        {
            "tenant": loc["tenant"],
            "venue": loc["id"],
            "login": loc["pos"]["key"],
            "passcode": loc["pos"]["secret"],
        }
        for loc in locs
        for _ in range(args.kds)
    ]
    return {
        "tenants": tenants,
        "locations": locs,
        "endpoints": endpoints,
        "orders": orders,
        "kds": kds,
        "channelKeys": {t: channel[t]["key"] for t in tenants},
        "posAuth": {loc["id"]: loc["pos_auth"] for loc in locs},
        "riderAuth": {loc["id"]: loc["rider_auth"] for loc in locs},
    }


# -- what each subscriber should have got -----------------------------------------------------
def expected_messages(
    api: Api, world: dict[str, Any], run_seqs: dict[int, set[int]]
) -> tuple[dict[tuple[str, int], set[int]], dict[tuple[int, int], int]]:
    """From the event log over REST and the dialects: socket destination → {(order, seq)}
    and (endpoint, order) → number of webhook messages, for the changes of the run."""
    from ordercast.dialects import Target, doshii, opendining, ordatic, orderingstack, rbi
    from ordercast.domain.events import EventRecord

    by_loc_kind = {(e["loc"], e["kind"]): i for i, e in enumerate(world["endpoints"])}
    render_for = {"pos": ordatic.render, "rider": rbi.render, "loyalty": doshii.render}
    sockets: dict[tuple[str, int], set[int]] = defaultdict(set)
    hooks: dict[tuple[int, int], int] = defaultdict(int)

    def one(oi: int) -> tuple[list[tuple[str, int]], list[tuple[int, int]]]:
        o = world["orders"][oi]
        seqs = run_seqs.get(oi)
        if not seqs:
            return [], []
        order = api.call("GET", f"/v1/orders/{o['id']}", None, world["posAuth"][o["loc"]])
        raw = api.call(
            "GET",
            f"/v1/orders/{o['id']}/events?after_seq=0&limit=1000",
            None,
            world["posAuth"][o["loc"]],
        )["events"]
        records = [EventRecord.from_dict(dict(e)) for e in raw]
        out_s: list[tuple[str, int]] = []
        out_h: list[tuple[int, int]] = []
        view = opendining.LocationView(o["loc"])
        for rec in records:
            if rec.seq not in seqs:
                continue
            for pe in opendining.render(rec, order, view):
                if pe.channel == f"private-o-{o['id']}":
                    out_s.append((pe.channel, rec.seq))
            for kind, render in render_for.items():
                ep = by_loc_kind[(o["loc"], kind)]
                target = Target(world["endpoints"][ep]["app"], kind, subscribed=kind == "loyalty")
                n = len(render(rec, order, target))
                if n:
                    out_h.append((ep, n))
        for msg in orderingstack.render_order_change(order, records):
            if msg.seq in seqs:
                out_s.append((msg.destination, msg.seq))
        return out_s, out_h

    for oi, (s, h) in enumerate(parallel(one, list(range(len(world["orders"]))))):
        for dest, seq in s:
            sockets[(dest, oi)].add(seq)
        for ep, n in h:
            hooks[(ep, oi)] += n
    return sockets, hooks


def drain(port: int, quiet: float = 2.0, limit: float = 300.0) -> int:
    """Wait until the set-up's webhooks have all arrived (no new one for ``quiet`` s)."""
    seen, since, end = -1, time.time(), time.time() + limit
    while time.time() < end:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/__dump")
        n = len(json.loads(conn.getresponse().read())["t"])
        conn.close()
        if n != seen:
            seen, since = n, time.time()
        elif time.time() - since >= quiet:
            return n
        time.sleep(0.5)
    return seen


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summarize(
    world: dict[str, Any],
    gen: dict[str, Any],
    hooks_log: dict[str, Any],
    expected_sockets: dict[tuple[str, int], set[int]],
    expected_hooks: dict[tuple[int, int], int],
) -> dict[str, Any]:
    orders = world["orders"]
    order_index = {o["id"]: i for i, o in enumerate(orders)}
    changes = gen["changes"]
    by_seq: dict[tuple[int, int], dict[str, Any]] = {}
    by_order: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for c in changes:
        for s in c["seqs"]:
            by_seq[(c["order"], s)] = c
        by_order[c["order"]].append(c)
    for cs in by_order.values():
        cs.sort(key=lambda c: c["tSend"])
    subs = gen["subscribers"]
    lat: dict[tuple[int, str], list[float]] = defaultdict(list)
    for c in changes:  # the POS's own wait: request sent to response read
        lat[(c["step"], "rest")].append(c["tResp"] - c["tSend"])
    got: dict[tuple[int, int], list[int]] = defaultdict(list)  # (sub, order) -> seqs in order
    r = gen["receipts"]
    for sub, oi, seq, t in zip(r["sub"], r["order"], r["seq"], r["t"], strict=True):
        got[(sub, oi)].append(seq)
        c = by_seq.get((oi, seq))
        if c is not None:
            kind = subs[sub]["kind"]
            transport = "stomp-kds" if kind == "kds" else kind
            lat[(c["step"], transport)].append(t - c["tResp"])
    # Sockets: every expected (order, seq) once, in seq order, nothing unexpected.
    checks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_dest: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(subs):
        by_dest[s["dest"]].append(i)
    for (dest, oi), seqs in expected_sockets.items():
        for sub in by_dest.get(dest, []):
            transport = "stomp-kds" if subs[sub]["kind"] == "kds" else subs[sub]["kind"]
            received = got.get((sub, oi), [])
            c = checks[transport]
            c["expected"] += len(seqs)
            c["received"] += len(set(received) & seqs)
            c["missing"] += len(seqs - set(received))
            c["duplicates"] += len(received) - len(set(received))
            c["unexpected"] += len(set(received) - seqs)
            c["out_of_order"] += int(received != sorted(received))
    # Webhooks: unique webhook-ids per (endpoint, order) against the dialects' count.
    ids: dict[tuple[int, int], set[str]] = defaultdict(set)
    repeats = 0
    for t, ep, order_id, wid in zip(
        hooks_log["t"], hooks_log["endpoint"], hooks_log["order"], hooks_log["id"], strict=True
    ):
        oi = order_index.get(order_id) if order_id else None
        if oi is None:
            checks["webhook"]["unattributed"] += 1
            continue
        before = [c for c in by_order.get(oi, []) if c["tSend"] <= t]
        if not before:
            continue  # caused by the set-up (the order's creation), drained before the run
        c = before[-1]
        lat[(c["step"], "webhook")].append(t - c["tResp"])
        if wid in ids[(ep, oi)]:
            repeats += 1
        ids[(ep, oi)].add(wid)
    wc = checks["webhook"]
    for key, n in expected_hooks.items():
        have = len(ids.get(key, ()))
        wc["expected"] += n
        wc["received"] += min(have, n)
        wc["missing"] += max(0, n - have)
        wc["unexpected"] += max(0, have - n)
    wc["repeats_same_id"] = repeats
    steps = []
    for st in gen["steps"]:
        row: dict[str, Any] = {k: st[k] for k in ("step", "rate", "changes", "achieved")}
        if "stallMaxMs" in st:  # the load generator's longest event-loop stall in the step
            row["loadgen_stall_ms"] = st["stallMaxMs"]
        for transport in ("rest", "pusher", "stomp", "stomp-kds", "webhook"):
            v = lat.get((st["step"], transport), [])
            row[transport] = {
                "n": len(v),
                "p50": pct(v, 0.5),
                "p99": pct(v, 0.99),
                "max": max(v) if v else None,
            }
        steps.append(row)
    return {"steps": steps, "checks": {k: dict(v) for k, v in checks.items()}}


def knee(summary: dict[str, Any], lossless: bool) -> float | None:
    best = None
    for row in summary["steps"]:
        sock = [
            row[t]["p99"] for t in ("pusher", "stomp", "stomp-kds") if row[t]["p99"] is not None
        ]
        hook = row["webhook"]["p99"]
        ok = (
            lossless
            and row["achieved"] >= 0.95 * row["rate"]
            and all(p < SOCKET_P99_MS for p in sock)
            and (hook is None or hook < WEBHOOK_P99_MS)
        )
        if not ok:
            break
        best = row["achieved"]
    return best


# -- the machine's limit ----------------------------------------------------------------------
def picows_cost(tmp: str) -> dict[str, Any]:
    """CPU seconds (server + load generator) per delivered message of the bare picows loop."""
    out = Path(tmp) / "picows.jsonl"
    subprocess.run(
        [
            PY,
            "-m",
            "bench",
            "fanout",
            "--mode",
            "pusher",
            "--servers",
            "picows",
            "--n",
            "1000",
            "--runs",
            "1",
            "--no-half",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        timeout=600,
        capture_output=True,
    )
    row = json.loads(out.read_text().splitlines()[-1])
    peak = row["runs"][0]["peak"] if "runs" in row else row["peak"]
    cores = sum(peak["server_cpu"]) + sum(peak["client_cpu"])
    return {
        "delivered_per_s": peak["delivered_per_s"],
        "cores": cores,
        "cpu_us_per_msg": cores / peak["delivered_per_s"] * 1e6,
    }


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench rush",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--tenants", type=int, default=4)
    p.add_argument("--locations", type=int, default=200)
    p.add_argument("--customers", type=int, default=20000)
    p.add_argument("--kds", type=int, default=2, help="KDS screens per location")
    p.add_argument("--stomp-share", type=float, default=0.5)
    p.add_argument("--rates", default="100,200,400,600,800,1000,1200")
    p.add_argument("--step-seconds", type=float, default=15)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--pos-clients", type=int, default=16)
    p.add_argument("--limits", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--src", help="run ordercast from DIR/src (A/B of two versions)")
    p.add_argument("--out", default="rush.jsonl")
    p.add_argument(
        "--worker",
        action="store_true",
        help="webhook delivery in an `ordercast worker` process of its own (the server runs "
        "with ORDERCAST_WEBHOOK_WORKER=false); its CPU is reported as worker_cores",
    )
    p.add_argument(
        "--render-in-worker",
        action="store_true",
        help="ORDERCAST_OUTBOX_RENDER=worker on every node: an order change's transaction "
        "keeps one row and the delivery worker renders its webhook messages",
    )
    p.add_argument(
        "--gateway-node",
        action="store_true",
        help="a second `ordercast run` on the same database holds every socket (Pusher, its "
        "channel auth, STOMP) while the first serves the POS's REST; both on a Redis bus "
        "(--bus-url); its CPU is reported as gateway_cores",
    )
    p.add_argument(
        "--rest-nodes",
        type=int,
        default=1,
        help="`ordercast run` processes serving the POS's REST on the same database and a "
        "Redis bus (--bus-url), each order's changes always through the same one; their CPU "
        "is summed in server_cores",
    )
    p.add_argument("--bus-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--keep", help="copy the load generator's raw output and the logs to DIR")
    p.add_argument(
        "--profile",
        help="py-spy the server during the timed steps into FILE (collapsed stacks; "
        "python -m bench.rush.profile FILE summarizes)",
    )
    args = p.parse_args(argv)
    if args.rest_nodes < 1:
        p.error("--rest-nodes must be 1 or more")
    rates = [float(x) for x in args.rates.split(",")]
    if args.profile and not (VENV_BIN / "py-spy").exists():
        # Checked before the world is built (minutes at full scale), not when the load starts.
        p.error("--profile needs py-spy, a bench extra: .venv/bin/pip install -e '.[bench]'")

    with tempfile.TemporaryDirectory() as tmp, database(args.db, tmp) as db:
        rport, hport, wport = free_port(), free_port(), free_port()
        ghport, gwport = (free_port(), free_port()) if args.gateway_node else (hport, wport)
        rest_ports = [hport]
        receiver = subprocess.Popen(["node", str(HERE / "receiver.mjs"), str(rport)])
        env = {
            **os.environ,
            "ORDERCAST_ADMIN_TOKEN": ADMIN,
            "ORDERCAST_LOG_LEVEL": "warning",
            "ORDERCAST_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32",
            "ORDERCAST_DEMO": "false",
            "ORDERCAST_ACCESS_TOKEN_TTL": str(6 * 3600),
        }
        if args.src:
            env["PYTHONPATH"] = str(Path(args.src) / "src")
        worker: subprocess.Popen[bytes] | None = None
        if args.worker:
            env["ORDERCAST_WEBHOOK_WORKER"] = "false"
        if args.render_in_worker:
            env["ORDERCAST_OUTBOX_RENDER"] = "worker"
        if args.gateway_node or args.rest_nodes > 1:
            env["ORDERCAST_BUS_URL"] = args.bus_url
        gateway: subprocess.Popen[bytes] | None = None
        extra: list[subprocess.Popen[bytes]] = []  # REST nodes after the first

        def start_node(
            name: str, http_port: int, ws_port: int, **more: str
        ) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [
                    str(VENV_BIN / "ordercast"),
                    "run",
                    "--http-port",
                    str(http_port),
                    "--ws-port",
                    str(ws_port),
                    "--database-url",
                    db,
                ],
                env={**env, **more},
                stdout=subprocess.DEVNULL,
                stderr=open(f"{tmp}/{name}.log", "wb"),
            )

        server = start_node("server", hport, wport)
        try:
            wait_port(hport, server)
            wait_port(wport, server)
            wait_port(rport, receiver)
            # The other nodes once the first has migrated the database; they neither deliver
            # webhooks nor run the POS timers (the first node or the worker does).
            quiet = {"ORDERCAST_WEBHOOK_WORKER": "false"}
            if args.gateway_node:
                gateway = start_node("gateway", ghport, gwport, **quiet)
                wait_port(ghport, gateway)
                wait_port(gwport, gateway)
            for i in range(args.rest_nodes - 1):
                ports = free_port(), free_port()
                extra.append(start_node(f"rest{i + 2}", *ports, **quiet))
                wait_port(ports[0], extra[-1])
                rest_ports.append(ports[0])
            if args.worker:  # once the server has migrated the database
                worker = subprocess.Popen(
                    [str(VENV_BIN / "ordercast"), "worker", "--database-url", db],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=open(f"{tmp}/worker.log", "wb"),  # noqa: SIM115
                )
            api = Api(hport)
            t0 = time.time()
            world = build_world(api, args, rport)
            drain(rport)
            print(
                f"world: {len(world['orders'])} orders, {len(world['kds'])} KDS, "
                f"{len(world['endpoints'])} endpoints in {time.time() - t0:.0f} s",
                flush=True,
            )
            cfg = {
                **world,
                "httpBase": f"http://127.0.0.1:{hport}",
                "httpBases": [f"http://127.0.0.1:{port}" for port in rest_ports],
                "authBase": f"http://127.0.0.1:{ghport}",
                "pusherBase": f"ws://127.0.0.1:{gwport}/app/",
                "stompUrl": f"ws://127.0.0.1:{gwport}/ws",
                "rates": rates,
                "stepSeconds": args.step_seconds,
                "settleMs": args.settle * 1000,
                "posClients": args.pos_clients,
            }
            cfg_path, out_path = Path(tmp) / "cfg.json", Path(tmp) / "gen.json"
            cfg_path.write_text(json.dumps(cfg))
            gen_proc = subprocess.Popen(
                [
                    "node",
                    "--max-old-space-size=4096",
                    str(HERE / "loadgen.mjs"),
                    str(cfg_path),
                    str(out_path),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert gen_proc.stdout is not None
            spy: subprocess.Popen[bytes] | None = None

            def start_profile() -> subprocess.Popen[bytes]:
                # From the end of the socket connects: the timed steps only (the connects,
                # each a channel auth and a subscribe, are not the rush's steady state).
                spy_args = ["record", "--format", "raw", "--rate", "200", "--gil", "--nonblocking"]
                spy_args += ["-o", args.profile, "--pid", str(server.pid)]
                return subprocess.Popen(
                    [str(VENV_BIN / "py-spy"), *spy_args], stdout=subprocess.DEVNULL
                )

            usage: list[dict[str, Any]] = []

            def cpu_of(proc: subprocess.Popen[bytes] | None) -> float:
                return cpu_seconds(proc.pid) if proc is not None else 0.0

            def server_cpu() -> float:
                return sum(cpu_seconds(node.pid) for node in (server, *extra))

            last = (
                time.time(),
                server_cpu(),
                cpu_seconds(gen_proc.pid),
                cpu_of(worker),
                cpu_of(gateway),
            )
            for line in gen_proc.stdout:
                ev = json.loads(line)
                print(line.strip(), flush=True)
                if args.profile and spy is None and ev.get("ev") == "connected":
                    spy = start_profile()
                now = (
                    time.time(),
                    server_cpu(),
                    cpu_seconds(gen_proc.pid),
                    cpu_of(worker),
                    cpu_of(gateway),
                )
                if ev.get("ev") == "step":
                    wall = now[0] - last[0]
                    usage.append(
                        {
                            "step": ev["step"],
                            "server_cores": (now[1] - last[1]) / wall,
                            "loadgen_cores": (now[2] - last[2]) / wall,
                            **(
                                {"worker_cores": (now[3] - last[3]) / wall}
                                if worker is not None
                                else {}
                            ),
                            **(
                                {
                                    "gateway_cores": (now[4] - last[4]) / wall,
                                    "gateway_rss_mb": rss_mb(gateway.pid),
                                }
                                if gateway is not None
                                else {}
                            ),
                            "server_rss_mb": rss_mb(server.pid),
                        }
                    )
                last = now
            gen_proc.wait(60)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            gen = json.loads(out_path.read_text())
            if args.keep:  # the raw receipts and the nodes' logs, for a closer look
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                for f in Path(tmp).iterdir():
                    if f.suffix in (".json", ".log"):
                        shutil.copy(f, Path(args.keep) / f.name)
            time.sleep(args.settle)
            conn = http.client.HTTPConnection("127.0.0.1", rport, timeout=60)
            conn.request("GET", "/__dump")
            hooks_log = json.loads(conn.getresponse().read())
            run_seqs: dict[int, set[int]] = defaultdict(set)
            for c in gen["changes"]:
                run_seqs[c["order"]].update(c["seqs"])
            exp_s, exp_h = expected_messages(api, world, run_seqs)
            summary = summarize(world, gen, hooks_log, exp_s, exp_h)
            for row, u in zip(summary["steps"], usage, strict=False):
                row.update(u)
            lossless = all(
                c.get("missing", 0) == 0
                and c.get("duplicates", 0) == 0
                and c.get("unexpected", 0) == 0
                for c in summary["checks"].values()
            )
            result: dict[str, Any] = {
                "bench": "rush",
                "db": args.db,
                "worker_process": args.worker,
                "gateway_node": args.gateway_node,
                "outbox_render": "worker" if args.render_in_worker else "commit",
                "rest_nodes": args.rest_nodes,
                "at": time.strftime("%Y-%m-%d %H:%M:%S"),
                "loadavg": os.getloadavg(),
                "world": {
                    "tenants": args.tenants,
                    "locations": args.locations,
                    "customers": args.customers,
                    "kds": len(world["kds"]),
                    "endpoints": len(world["endpoints"]),
                    "stomp_share": args.stomp_share,
                },
                "errors": gen["errors"],
                "error_samples": gen["errorSamples"],
                "lossless": lossless,
                **summary,
                "knee_changes_per_s": knee(summary, lossless),
                "db_path": db,
            }
        finally:
            stop(server)
            if worker is not None:
                stop(worker)
            for node in (gateway, *extra):
                if node is not None:
                    stop(node)
            stop(receiver)
        if args.limits:
            from bench.rush.bare_writes import bare_write_bound

            result["limit_writes"] = bare_write_bound(db, tmp)
            result["limit_sockets"] = picows_cost(tmp)
            from bench.rush.bare_http import measure as bare_http_cost

            result["limit_http"] = bare_http_cost()
            result["limit"] = machine_limit(result)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(result) + "\n")
    from bench.rush.report import print_run

    print_run(result)


def machine_limit(result: dict[str, Any]) -> dict[str, Any]:
    """The best R this box could sustain for the same deliveries and writes: 2 cores over
    the bare loops' CPU per change, and no more than the bare writer's own rate.

    ``bound_changes_per_s`` (as first reported): the bare writer's CPU per change plus the
    socket messages per change at the bare picows loop's CPU per message. ``bound_http``
    adds the HTTP a change also brings, at the bare HTTP loops' CPU (bench/rush/bare_http.py):
    the POS's REST request, and each webhook delivery (signed POST, answer parsed)."""
    checks = result["checks"]
    changes = sum(row["changes"] for row in result["steps"]) or 1
    socket_msgs = sum(
        checks.get(t, {}).get("expected", 0) for t in ("pusher", "stomp", "stomp-kds")
    )
    per_change_sock_us = socket_msgs / changes * result["limit_sockets"]["cpu_us_per_msg"]
    writes = result["limit_writes"]
    per_change_us = per_change_sock_us + writes["cpu_us_per_change"]
    cores = os.cpu_count() or 2
    bound = min(cores / (per_change_us / 1e6), writes["changes_per_s"])
    out: dict[str, Any] = {
        "socket_msgs_per_change": socket_msgs / changes,
        "cpu_us_per_change": per_change_us,
        "bound_changes_per_s": bound,
    }
    if result.get("knee_changes_per_s"):
        out["knee_fraction"] = result["knee_changes_per_s"] / bound
    http = result.get("limit_http")
    if http:
        webhooks = checks.get("webhook", {}).get("expected", 0) / changes
        http_us = (
            http["request"]["cpu_us_per_request"]
            + webhooks * http["delivery"]["cpu_us_per_delivery"]
        )
        out["webhooks_per_change"] = webhooks
        out["cpu_us_per_change_http"] = per_change_us + http_us
        out["bound_http"] = min(cores / ((per_change_us + http_us) / 1e6), writes["changes_per_s"])
        if result.get("knee_changes_per_s"):
            out["knee_fraction_http"] = result["knee_changes_per_s"] / out["bound_http"]
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
