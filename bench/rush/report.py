"""Tables from ``python -m bench rush --out FILE`` JSON lines.

.venv/bin/python -m bench.rush.report rush.jsonl
"""

from __future__ import annotations

import json
import sys
from typing import Any


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.1f}"


def print_run(r: dict[str, Any]) -> None:
    w = r["world"]
    print(
        f"\n## rush on {r['db']} at {r['at']} (load {r['loadavg'][0]:.1f}): "
        f"{w['locations']} locations, "
        f"{w['customers']} customer sockets ({w['stomp_share']:.0%} STOMP), {w['kds']} KDS, "
        f"{w['endpoints']} webhook endpoints; client errors {r['errors']}"
    )
    split = any("gateway_cores" in s for s in r["steps"])
    nodes = "REST node" if r.get("rest_nodes", 1) == 1 else f"{r['rest_nodes']} REST nodes"
    server_head = f"server cores ({nodes} + socket node)" if split else f"server cores ({nodes})"
    print(
        f"\n| R asked | achieved/s | {server_head} | worker cores "
        "| load generator cores (longest stall ms) | RSS MB "
        "| REST p50/p99 ms | Pusher p50/p99/max ms | STOMP p50/p99/max | KDS p50/p99/max "
        "| webhook p50/p99/max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in r["steps"]:
        rest = s.get("rest")  # not in the runs recorded before it was
        cells = [f"{ms(rest['p50'])} / {ms(rest['p99'])}" if rest else "—"]
        cells += [
            f"{ms(s[t]['p50'])} / {ms(s[t]['p99'])} / {ms(s[t]['max'])}"
            for t in ("pusher", "stomp", "stomp-kds", "webhook")
        ]
        worker = f"{s['worker_cores']:.2f}" if "worker_cores" in s else "—"
        gen = f"{s.get('loadgen_cores', 0):.2f}"
        if "loadgen_stall_ms" in s:
            gen += f" ({s['loadgen_stall_ms']:,.0f})"
        server = f"{s.get('server_cores', 0):.2f}"
        if "gateway_cores" in s:
            server += f" + {s['gateway_cores']:.2f}"
        print(
            f"| {s['rate']:,.0f} | {s['achieved']:,.0f} | {server} "
            f"| {worker} | {gen} | {s.get('server_rss_mb', 0):,.0f} | " + " | ".join(cells) + " |"
        )
    print(
        "\n| transport | expected | received | missing | duplicates | unexpected | out of order |"
    )
    print("|---|---|---|---|---|---|---|")
    for t, c in sorted(r["checks"].items()):
        print(
            f"| {t} | {c.get('expected', 0):,} | {c.get('received', 0):,} "
            f"| {c.get('missing', 0):,} "
            f"| {c.get('duplicates', c.get('repeats_same_id', 0)):,} | {c.get('unexpected', 0):,} "
            f"| {c.get('out_of_order', '—')} |"
        )
    print(f"\nknee: {r['knee_changes_per_s']} changes/s (lossless: {r['lossless']})")
    if "limit" in r:
        lw, ls, lim = r["limit_writes"], r["limit_sockets"], r["limit"]
        print(
            f"bare driver: {lw['changes_per_s']:,.0f} changes/s (group {lw['group']}), "
            f"{lw['cpu_us_per_change']:,.0f} CPU us/change; bare picows: "
            f"{ls['cpu_us_per_msg']:.1f} CPU us/message; socket messages/change "
            f"{lim['socket_msgs_per_change']:.2f}; "
            f"bound {lim['bound_changes_per_s']:,.0f} changes/s"
            + (f"; knee = {lim['knee_fraction']:.0%} of it" if "knee_fraction" in lim else "")
        )
        if "bound_http" in lim:
            lh = r["limit_http"]
            print(
                f"with the HTTP: bare request {lh['request']['cpu_us_per_request']:,.0f} CPU "
                f"us, bare signed webhook POST {lh['delivery']['cpu_us_per_delivery']:,.0f} "
                f"CPU us x {lim['webhooks_per_change']:.2f} per change; bound "
                f"{lim['bound_http']:,.0f} changes/s"
                + (
                    f"; knee = {lim['knee_fraction_http']:.0%} of it"
                    if "knee_fraction_http" in lim
                    else ""
                )
            )


def main(paths: list[str]) -> None:
    for path in paths:
        with open(path) as fh:
            for line in fh:
                if line.strip():
                    print_run(json.loads(line))


if __name__ == "__main__":
    main(sys.argv[1:])
