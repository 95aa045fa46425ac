"""Markdown tables from ``python -m bench fanout --out FILE`` JSON lines (medians per cell).

.venv/bin/python bench/fanout/report.py results.jsonl [more.jsonl ...]
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from typing import Any

RSS = "rss_per_idle_conn_kb"


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def main(paths: list[str]) -> None:
    cells: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        with open(path) as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    cells[(row["n"], row["server"])].append(row)
    print(
        "| N x K | server | delivered (peak) | delivered/s (runs) | half rate ev/s "
        "| p50 ms | p99 ms | RSS/idle conn KB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    peaks: dict[tuple[int, str], float | None] = {}
    for (n, server), rows in sorted(cells.items()):
        ok = [r for r in rows if "peak" in r]
        hung = [r["hung"] for r in rows if "hung" in r]
        rates = [r["peak"]["delivered_per_s"] for r in ok if r["peak"]["delivered_per_s"]]
        peak = med(rates)
        peaks[(n, server)] = peak
        halves = [r["half"] for r in ok if "half" in r]
        delivered = ", ".join(f"{r['peak']['delivered']:,}/{r['peak']['expected']:,}" for r in ok)
        if hung:
            delivered += f" hung: {'; '.join(hung)}"
        print(
            f"| {n:,} x {rows[0]['k']} | {server} | {delivered} | **{fmt(peak)}** "
            f"({', '.join(fmt(x) for x in rates)}) "
            f"| {fmt(med([h['rate_events_per_s'] for h in halves]), 1)} "
            f"| {fmt(med([h['p50_ms'] for h in halves if h['p50_ms'] is not None]), 1)} "
            f"| {fmt(med([h['p99_ms'] for h in halves if h['p99_ms'] is not None]), 1)} "
            f"| {fmt(med([r['rss_per_idle_conn_kb'] for r in ok if r.get(RSS) is not None]), 1)} |"
        )
    print()
    print(
        "| N x K | server | bytes/msg | client CPU (usr+sys cores) | server CPU (usr+sys cores) "
        "| client µs/msg | server µs/msg |"
    )
    print("|---|---|---|---|---|---|---|")
    for (n, server), rows in sorted(cells.items()):
        peaks_ok = [r["peak"] for r in rows if "peak" in r and r["peak"].get("client_cpu")]
        if not peaks_ok:
            continue

        def cores(p: dict[str, Any], who: str) -> float | None:
            value = p.get(who)
            if not isinstance(value, list):  # early results: one usr+sys figure
                return value if isinstance(value, int | float) else None
            usr, sys_ = value
            return None if usr is None or sys_ is None else float(usr + sys_)

        def per_msg(p: dict[str, Any], who: str) -> float | None:
            c = cores(p, who)
            return c / p["delivered_per_s"] * 1e6 if c and p["delivered_per_s"] else None

        def m(values: list[float | None]) -> float | None:
            return med([v for v in values if v is not None])

        bpm = m([p.get("bytes_per_msg") for p in peaks_ok])
        print(
            f"| {n:,} x {rows[0]['k']} | {server} | {fmt(bpm)} "
            f"| {fmt(m([cores(p, 'client_cpu') for p in peaks_ok]), 2)} "
            f"| {fmt(m([cores(p, 'server_cpu') for p in peaks_ok]), 2)} "
            f"| {fmt(m([per_msg(p, 'client_cpu') for p in peaks_ok]), 1)} "
            f"| {fmt(m([per_msg(p, 'server_cpu') for p in peaks_ok]), 1)} |"
        )
    print()
    print(
        "| N | full path / bare picows | full / Node ws | full / socketio | STOMP / Pusher full |"
    )
    print("|---|---|---|---|---|")
    for n in sorted({n for n, _ in cells}):
        full = peaks.get((n, "ordercast"))

        def ratio(other: str, num: float | None = full, _n: int = n) -> str:
            den = peaks.get((_n, other))
            return f"{num / den:.2f}" if num and den else "—"

        stomp = peaks.get((n, "ordercast-stomp"))
        print(
            f"| {n:,} | {ratio('picows')} | {ratio('node-ws')} | {ratio('socketio')} "
            f"| {ratio('ordercast', stomp)} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
