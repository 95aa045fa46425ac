"""Summarize a py-spy collapsed-stack file (``bench rush --profile FILE``) as Markdown tables.

    .venv/bin/python -m bench.rush.profile FILE [--top 25] [--under ordercast]

Frames are aggregated by function and file (line numbers dropped). *Own* counts the samples
where a function was the innermost frame, *total* the samples where it was anywhere on the
stack (counted once per sample). Samples whose innermost frame is the event loop's selector
wait are reported apart as idle (with ``--gil``, as ``bench rush --profile`` records, a
thread waiting for I/O or a lock holds no GIL and is not sampled at all, so the samples are
the server's Python CPU; SQLite's own C code runs without the GIL and is not in them).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
#: Where a sample's time belongs, by the first rule one of its frames matches (substrings).
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "socket setup (channel auth, subscribe, last state)",
        (
            "opendining_auth",
            "_authorize (ordercast",
            "_load_last_state",
            "StompConnection._subscribe",
            "ChannelRegistry.app_state",
            "subscription_succeeded",
            "Directory.authenticate",
            "authenticate (ordercast/api/deps",
        ),
    ),
    ("write transaction: outbox hook (render, encode, insert)", ("OutboxHook.__call__",)),
    ("write transaction: read, decide, update, insert", ("SqliteWriter._apply",)),
    (
        "webhook delivery worker (claim, POST, record)",
        ("DeliveryWorker", "SqlOutbox.claim", "Sender."),
    ),
    ("hub fan-out (Pusher/STOMP render and send)", ("Hub._pump", "Hub.dispatch", "Fanout.flush")),
    (
        "REST request (uvicorn, FastAPI, command route)",
        ("HttpMetrics", "RequestResponseCycle", "HttpToolsProtocol"),
    ),
    ("SQLite reads (aiosqlite thread)", ("aiosqlite",)),
    (
        "hand-off to the writer thread and back",
        (
            "ThreadPoolExecutor.submit",
            "_call_set_state",
            "SqliteWriter._drain",
            "_copy_future_state",
        ),
    ),
    ("WAL checkpointer thread", ("Checkpointer",)),
)


def short_file(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = path.split("/", 1)[1] if "/" in path else path
            break
    return path


def frame_name(raw: str) -> str:
    m = FRAME.match(raw.strip())
    if not m:
        return raw.strip()
    return f"{m['func']} ({short_file(m['file'])})"


def parse(path: Path) -> tuple[Counter[str], Counter[str], Counter[str], int, int]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    samples = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [frame_name(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        leaf = frames[-1]
        if leaf.startswith(("select (", "poll (")) and "selectors.py" in leaf:
            idle += count
            continue
        own[leaf] += count
        for f in set(frames):
            total[f] += count
        joined = ";".join(frames)
        bucket = next((b for b, keys in BUCKETS if any(k in joined for k in keys)), "other")
        buckets[bucket] += count
    return own, total, buckets, samples, idle


def table(title: str, counts: Counter[str], busy: int, top: int) -> str:
    rows = [f"### {title}", "", "| % of busy samples | frame |", "|---:|---|"]
    for name, n in counts.most_common(top):
        rows.append(f"| {100 * n / busy:.1f} | `{name}` |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.rush.profile")
    p.add_argument("file")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--under", help="total-time table only for frames whose file contains this")
    args = p.parse_args(argv)
    own, total, buckets, samples, idle = parse(Path(args.file))
    busy = max(samples - idle, 1)
    print(
        f"{samples} samples, {idle} idle in the selector ({100 * idle / max(samples, 1):.0f} %)\n"
    )
    print(table("Where the time goes (first matching rule)", buckets, busy, len(BUCKETS) + 1))
    print(table("Own time (innermost frame)", own, busy, args.top))
    if args.under:
        total = Counter({k: v for k, v in total.items() if args.under in k})
    print(table("Total time (anywhere on the stack)", total, busy, args.top))


if __name__ == "__main__":
    main(sys.argv[1:])
