"""The durable-write bound of the dinner rush: the same rows per change as ordercast wrote,
through the bare driver, with the same durability settings and group commit.

Read from the database the rush run left behind: how many rows each change wrote (events,
outbox messages, delivery attempts per committed change, where a change is one order's
events with one ``recorded_at``) and real rows to copy (order documents, event data, message
bodies, attempts). Then, in a fresh database with ordercast's own schema
(``ordercast.storage.schema``), write ``--changes`` changes as fast as one connection can:
per change one ``UPDATE orders`` (document, version, status), its ``INSERT events``, its
outbox ``INSERT webhook_messages``, and the delivery side of each message (the claim
``UPDATE``, the ``INSERT webhook_attempts``, the ``delivered`` ``UPDATE``), ``GROUP``
changes per transaction (ordercast's SQLite writer commits a group too). SQLite: stdlib
``sqlite3`` in WAL with ``synchronous=NORMAL`` (ordercast's pragmas, storage/writer.py);
PostgreSQL: asyncpg, default ``synchronous_commit``. Reports changes/s (wall) and CPU µs per
change (this process; PostgreSQL's own CPU is read from its backend's /proc entry).

    .venv/bin/python -m bench.rush.bare_writes DATABASE_URL [--changes 20000] [--group 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

# ordercast's SQLite connection settings (storage/writer.py sqlite_pragmas).
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)
TABLES = ("orders", "events", "webhook_messages", "webhook_attempts")


def _sample_sqlite(path: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = {t: [dict(r) for r in conn.execute(f"SELECT * FROM {t} LIMIT 2000")] for t in TABLES}
    counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    changes = conn.execute(
        "SELECT count(*) FROM (SELECT DISTINCT order_id, recorded_at FROM events)"
    ).fetchone()[0]
    conn.close()
    return rows, _per_change(counts, changes)


async def _sample_pg(url: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = {
            t: [dict(r) for r in await conn.fetch(f"SELECT * FROM {t} LIMIT 2000")] for t in TABLES
        }
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
        changes = await conn.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT order_id, recorded_at FROM events) x"
        )
    finally:
        await conn.close()
    return rows, _per_change(counts, changes)


def _per_change(counts: dict[str, int], changes: int) -> dict[str, float]:
    n = max(1, changes)
    return {
        "changes_in_run_db": changes,
        "events": counts["events"] / n,
        "messages": counts["webhook_messages"] / n,
        "attempts": counts["webhook_attempts"] / n,
    }


def _insert_sql(table: str, columns: list[str], style: str) -> str:
    marks = ", ".join("?" if style == "qmark" else f"${i + 1}" for i in range(len(columns)))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


class Plan:
    """The statements of N changes, built before timing (ids and counters included)."""

    def __init__(
        self, rows: dict[str, list[dict[str, Any]]], per: dict[str, float], n: int
    ) -> None:
        for t in TABLES:
            if not rows[t] and not (t == "webhook_attempts" and per["attempts"] == 0):
                raise SystemExit(f"the rush database has no {t} rows to copy")
        self.orders = [dict(r) for r in rows["orders"]]
        ev_cols = [c for c in rows["events"][0] if c != "pos"]
        msg_cols = [c for c in rows["webhook_messages"][0] if c != "pos"]
        att_cols = [c for c in (rows["webhook_attempts"] or [{}])[0] if c != "pos"]
        self.ev_cols, self.msg_cols, self.att_cols = ev_cols, msg_cols, att_cols
        self.order_cols = list(self.orders[0])
        self.changes: list[dict[str, list[tuple[Any, ...]]]] = []
        seq = {o["id"]: 10_000 for o in self.orders}
        acc = {"events": 0.0, "messages": 0.0, "attempts": 0.0}
        for i in range(n):
            o = self.orders[i % len(self.orders)]
            ch: dict[str, list[tuple[Any, ...]]] = {
                "order": [],
                "events": [],
                "messages": [],
                "attempts": [],
            }
            for kind in acc:
                acc[kind] += per[kind]
            while acc["events"] >= 1:
                acc["events"] -= 1
                seq[o["id"]] += 1
                src = rows["events"][i % len(rows["events"])]
                e = {
                    **src,
                    "event_id": "evt_" + secrets.token_hex(10),
                    "order_id": o["id"],
                    "seq": seq[o["id"]],
                }
                ch["events"].append(tuple(e[c] for c in ev_cols))
            ch["order"].append((o["doc"], seq[o["id"]], o["status"], o["updated_at"], o["id"]))
            msg_ids = []
            while acc["messages"] >= 1:
                acc["messages"] -= 1
                src = rows["webhook_messages"][i % len(rows["webhook_messages"])]
                m = {
                    **src,
                    "id": "msg_" + secrets.token_hex(10),
                    "event_id": "evt_" + secrets.token_hex(10),
                    "order_id": o["id"],
                }
                ch["messages"].append(tuple(m[c] for c in msg_cols))
                msg_ids.append(m["id"])
            while acc["attempts"] >= 1:
                acc["attempts"] -= 1
                src = rows["webhook_attempts"][i % len(rows["webhook_attempts"])]
                mid = msg_ids[len(ch["attempts"]) % len(msg_ids)] if msg_ids else src["message_id"]
                a = {**src, "id": "att_" + secrets.token_hex(10), "message_id": mid}
                ch["attempts"].append(tuple(a[c] for c in att_cols))
            self.changes.append(ch)


def _fresh_schema_sqlite(path: str) -> None:
    import sqlalchemy as sa

    from ordercast.storage.schema import metadata

    engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()


ORDER_UPDATE = (
    "UPDATE orders SET doc = {0}, version = {1}, status = {2}, updated_at = {3} WHERE id = {4}"
)
CLAIM = (
    "UPDATE webhook_messages SET status = 'delivering', lease_until = {0}, claimed_by = 'bare' "
    "WHERE id = {1}"
)
DONE = (
    "UPDATE webhook_messages SET status = 'delivered', attempts = attempts + 1, "
    "lease_until = NULL WHERE id = {0}"
)


def run_sqlite(plan: Plan, group: int, delivery: bool = True) -> dict[str, Any]:
    """``delivery=False``: the order transactions only (no claim, attempt, delivered)."""
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "bare.db")
        _fresh_schema_sqlite(path)
        conn = sqlite3.connect(path, isolation_level=None)
        for p in PRAGMAS:
            conn.execute(p)
        cols = plan.order_cols
        conn.executemany(
            _insert_sql("orders", cols, "qmark"), [tuple(o[c] for c in cols) for o in plan.orders]
        )
        q = ("?", "?", "?", "?", "?")
        upd, claim, done = ORDER_UPDATE.format(*q), CLAIM.format("?", "?"), DONE.format("?")
        ins_e = _insert_sql("events", plan.ev_cols, "qmark")
        ins_m = _insert_sql("webhook_messages", plan.msg_cols, "qmark")
        ins_a = _insert_sql("webhook_attempts", plan.att_cols, "qmark")
        mid = plan.msg_cols.index("id")
        cpu0, t0 = time.process_time(), time.perf_counter()
        for start in range(0, len(plan.changes), group):
            conn.execute("BEGIN IMMEDIATE")
            for ch in plan.changes[start : start + group]:
                conn.executemany(upd, ch["order"])
                conn.executemany(ins_e, ch["events"])
                conn.executemany(ins_m, ch["messages"])
            conn.execute("COMMIT")
            if not delivery:
                continue
            # The delivery side, as the worker's own transactions (claim; attempt + done).
            conn.execute("BEGIN IMMEDIATE")
            for ch in plan.changes[start : start + group]:
                conn.executemany(claim, [(time.time() + 30, m[mid]) for m in ch["messages"]])
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            for ch in plan.changes[start : start + group]:
                conn.executemany(ins_a, ch["attempts"])
                conn.executemany(done, [(m[mid],) for m in ch["messages"]])
            conn.execute("COMMIT")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        conn.close()
    n = len(plan.changes)
    return {
        "changes_per_s": n / wall,
        "cpu_us_per_change": cpu / n * 1e6,
        "db_cpu_us_per_change": 0.0,
    }


async def run_pg(plan: Plan, group: int) -> dict[str, Any]:
    import asyncpg
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex, CreateTable

    from ordercast.storage.schema import metadata

    admin = "postgresql://postgres@127.0.0.1:5432/test"
    name = f"ordercast_bare_{secrets.token_hex(4)}"
    a = await asyncpg.connect(admin)
    await a.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}")
        dialect = postgresql.dialect()
        for table in metadata.sorted_tables:
            await conn.execute(str(CreateTable(table).compile(dialect=dialect)))
            for index in table.indexes:
                await conn.execute(str(CreateIndex(index).compile(dialect=dialect)))
        cols = plan.order_cols

        def jsonish(v: Any) -> Any:
            return json.dumps(v) if isinstance(v, dict | list) else v

        await conn.executemany(
            _insert_sql("orders", cols, "numeric"),
            [tuple(jsonish(o[c]) for c in cols) for o in plan.orders],
        )
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        dollar = tuple(f"${i}" for i in range(1, 6))
        upd, claim, done = ORDER_UPDATE.format(*dollar), CLAIM.format("$1", "$2"), DONE.format("$1")
        ins_e = _insert_sql("events", plan.ev_cols, "numeric")
        ins_m = _insert_sql("webhook_messages", plan.msg_cols, "numeric")
        ins_a = _insert_sql("webhook_attempts", plan.att_cols, "numeric")
        mid = plan.msg_cols.index("id")

        def fix(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
            return [tuple(jsonish(v) for v in r) for r in rows]

        changes = [{k: fix(v) for k, v in ch.items()} for ch in plan.changes]
        db_cpu0 = _proc_cpu(backend)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for start in range(0, len(changes), group):
            batch = changes[start : start + group]
            async with conn.transaction():
                for ch in batch:
                    await conn.executemany(upd, ch["order"])
                    if ch["events"]:
                        await conn.executemany(ins_e, ch["events"])
                    if ch["messages"]:
                        await conn.executemany(ins_m, ch["messages"])
            async with conn.transaction():
                await conn.executemany(
                    claim, [(time.time() + 30, m[mid]) for ch in batch for m in ch["messages"]]
                )
            async with conn.transaction():
                rows_a = [r for ch in batch for r in ch["attempts"]]
                if rows_a:
                    await conn.executemany(ins_a, rows_a)
                await conn.executemany(done, [(m[mid],) for ch in batch for m in ch["messages"]])
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        db_cpu = _proc_cpu(backend) - db_cpu0
        await conn.close()
    finally:
        await a.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await a.close()
    n = len(changes)
    return {
        "changes_per_s": n / wall,
        "cpu_us_per_change": (cpu + db_cpu) / n * 1e6,
        "db_cpu_us_per_change": db_cpu / n * 1e6,
    }


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_write_bound(
    url: str,
    _tmp: str = "",
    changes: int = 20000,
    groups: tuple[int, ...] = (1, 32),
    delivery: bool = True,
) -> dict[str, Any]:
    """The best of ``groups`` (changes per transaction) for the rush database at ``url``
    (``delivery=False``, SQLite only: without the delivery side's transactions)."""
    if url.startswith("sqlite:///"):
        rows, per = _sample_sqlite(url.removeprefix("sqlite:///"))
    else:
        rows, per = asyncio.run(_sample_pg(url))
    plan = Plan(rows, per, changes)
    results = []
    for g in groups:
        if url.startswith("sqlite"):
            r = run_sqlite(plan, g, delivery)
        else:
            r = asyncio.run(run_pg(plan, g))
        results.append({"group": g, **r})
    best = max(results, key=lambda r: r["changes_per_s"])
    return {**best, "rows_per_change": per, "all": results}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("url")
    p.add_argument("--changes", type=int, default=20000)
    p.add_argument("--group", default="1,32")
    a = p.parse_args()
    print(
        json.dumps(
            bare_write_bound(a.url, "", a.changes, tuple(int(x) for x in a.group.split(","))),
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
