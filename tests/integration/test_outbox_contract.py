"""One contract for ``ports.Outbox``, run against MemoryOutbox, SQLite and PostgreSQL:
claims (oldest first, FIFO heads only, per-endpoint caps, saturated endpoints skipped),
outcomes (fenced by the claiming worker, failure streaks, disabling), leases and replay.

Times are small numbers (1,000 s after the epoch), so on the PostgreSQL database the other
tests share, the claims and reaps here never see their messages (due at real times)."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ordercast.ports import App, EndpointTarget, Outbox, OutboxMessage, Outcome, Tenant
from ordercast.storage import open_store
from ordercast.storage.memory import MemoryOutbox

T0 = 1000.0


@dataclass
class Backend:
    outbox: Outbox
    tag: str  # unique per test: ids never collide on the shared PostgreSQL database
    ids: itertools.count[int]
    endpoints: list[str] = field(default_factory=list)  # deleted (with their rows) after

    def id(self, prefix: str) -> str:
        return f"{prefix}{self.tag}_{next(self.ids)}"


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/outbox.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def backend(where: str) -> AsyncIterator[Backend]:
    tag = secrets.token_hex(4)
    if where == "memory":
        memory = MemoryOutbox()
        for app in ("a1", "a2"):
            memory.add_app(f"{app}_{tag}", tenant_id="t", key=f"k{app}", secret=f"s{app}")
        yield Backend(memory, tag, itertools.count())
        return
    store = open_store(where)
    await store.migrate()
    try:
        await store.create_tenant(Tenant(f"t_{tag}", "T", "2026-01-01T00:00:00.000000Z"))
        for app in ("a1", "a2"):
            await store.create_app(
                App(f"{app}_{tag}", f"t_{tag}", app, "channel", f"k{app}{tag}", f"s{app}", {}, "c")
            )
        b = Backend(store.outbox(), tag, itertools.count())
        yield b
        for eid in b.endpoints:  # the PostgreSQL database is shared by the whole session
            await b.outbox.delete_endpoint(eid)
    finally:
        await store.close()


async def endpoint(
    b: Backend, app: str, *, fifo: bool = False, max_concurrency: int = 8, enabled: bool = True
) -> EndpointTarget:
    eid = b.id("ep_")
    b.endpoints.append(eid)
    await b.outbox.create_endpoint(
        {
            "id": eid,
            "app_id": f"{app}_{b.tag}",
            "tenant_id": f"t_{b.tag}",
            "url": f"http://127.0.0.1:9/{eid}",
            "dialect": "ordercast",
            "event_types": None,
            "description": None,
            "secret": "whsec_" + "A" * 32,
            "old_secrets": [],
            "enabled": enabled,
            "disabled_reason": None,
            "fifo": fifo,
            "max_concurrency": max_concurrency,
            "failing_since": None,
            "created_at": "2026-01-01T00:00:00.000000Z",
            "updated_at": "2026-01-01T00:00:00.000000Z",
        }
    )
    return EndpointTarget(eid, f"{app}_{b.tag}", "ordercast", None, enabled)


def message(b: Backend, ep: EndpointTarget, order: str, seq: int, at: float = T0) -> OutboxMessage:
    return OutboxMessage.new(
        id=b.id("msg_"),
        endpoint=ep,
        body=b'{"seq":%d}' % seq,
        event_type="order.note",
        wire_type="order.note",
        event_at=f"2026-01-01T00:00:{seq:02d}.000000Z",
        now=at,
        order_id=f"{order}_{b.tag}",
        event_id=b.id("evt_"),
        seq=seq,
    )


def outcome(msg_id: str, ep: str, *, ok: bool, retry_at: float | None = None) -> Outcome:
    status = "delivered" if ok else ("pending" if retry_at is not None else "failed")
    return Outcome(
        message_id=msg_id,
        endpoint_id=ep,
        attempt_id="att_" + secrets.token_hex(8),
        attempt=1,
        trigger="scheduled",
        url="http://127.0.0.1:9/",
        at="2026-01-01T00:00:00.000000Z",
        webhook_timestamp=int(T0),
        status_code=204 if ok else 500,
        delivered=ok,
        reason="delivered" if ok else "status 500",
        latency_ms=1.0,
        response_body=None,
        message_status=status,
        next_attempt_at=retry_at,
        disable_endpoint=None,
        now=T0 + 1,
    )


async def claim(b: Backend, worker: str = "w1", **kw: Any) -> list[str]:
    args: dict[str, Any] = {"now": T0 + 0.5, "lease_until": T0 + 30, "limit": 100}
    args["in_flight"] = {}
    args.update(kw)
    return [c.id for c in await b.outbox.claim(worker, **args)]


async def test_claims_are_oldest_first_and_fifo_exposes_only_each_orders_head(
    backend: Backend,
) -> None:
    b = backend
    plain, fifo = await endpoint(b, "a1"), await endpoint(b, "a2", fifo=True)
    msgs = [
        message(b, plain, "o1", 1, T0),
        message(b, fifo, "o1", 1, T0 + 0.1),
        message(b, fifo, "o1", 2, T0 + 0.2),
        message(b, fifo, "o2", 1, T0 + 0.3),
        message(b, plain, "o1", 2, T0 + 0.4),
        message(b, plain, "o1", 3, T0 + 9),  # not due yet
    ]
    await b.outbox.enqueue(msgs)
    got = await claim(b)
    assert got == [msgs[0].id, msgs[1].id, msgs[3].id, msgs[4].id]
    assert await claim(b, "w2") == []  # the rest is claimed, behind a head, or not due
    # The head delivered: the FIFO endpoint's next message of o1 becomes claimable.
    await b.outbox.record("w1", [outcome(msgs[1].id, fifo.id, ok=True)])
    assert await claim(b, "w2") == [msgs[2].id]


async def test_claims_are_capped_per_endpoint_and_skip_saturated_ones(backend: Backend) -> None:
    b = backend
    small, other = await endpoint(b, "a1", max_concurrency=2), await endpoint(b, "a2")
    mine = [message(b, small, f"o{i}", 1, T0 + i / 100) for i in range(5)]
    theirs = [message(b, other, f"p{i}", 1, T0 + 0.2 + i / 100) for i in range(2)]
    await b.outbox.enqueue(mine + theirs)
    # One already held for `small`: depth 1 leaves room for one more.
    assert await claim(b, in_flight={small.id: 1}) == [mine[0].id, theirs[0].id, theirs[1].id]
    assert await claim(b, saturated=[small.id]) == []
    # Twice max_concurrency held per endpoint (depth 2), one held already: three more.
    assert await claim(b, depth=2, in_flight={small.id: 1}) == [m.id for m in mine[1:4]]


async def test_outcomes_are_fenced_and_keep_the_endpoints_failure_streak(
    backend: Backend,
) -> None:
    b = backend
    ep = await endpoint(b, "a1")
    first, second = message(b, ep, "o1", 1), message(b, ep, "o2", 1)
    await b.outbox.enqueue([first, second])
    assert await claim(b) == [first.id, second.id]
    # A worker that does not hold the claim cannot change the row (its attempt is logged).
    await b.outbox.record("intruder", [outcome(first.id, ep.id, ok=True)])
    await b.outbox.record("w1", [outcome(first.id, ep.id, ok=False, retry_at=T0 + 60)])
    endpoint_row = await b.outbox.get_endpoint(ep.id)
    assert endpoint_row is not None and endpoint_row["failing_since"] == T0 + 1
    await b.outbox.record("w1", [outcome(second.id, ep.id, ok=True)])
    endpoint_row = await b.outbox.get_endpoint(ep.id)
    assert endpoint_row is not None and endpoint_row["failing_since"] is None
    rows = {
        m["id"]: m
        for m in await b.outbox.list_messages(ep.id, status=None, order_id=None, limit=10)
    }
    assert rows[first.id]["status"] == "pending" and rows[first.id]["next_attempt_at"] == T0 + 60
    assert rows[first.id]["last_error"] == "status 500"
    assert rows[second.id]["status"] == "delivered"
    attempts = await b.outbox.list_attempts(ep.id, limit=10)
    assert [a["message_id"] for a in attempts] == [second.id, first.id, first.id]
    assert await b.outbox.count_messages(ep.id) == {"pending": 1, "delivered": 1}
    # Disabling: the endpoint's messages are no longer claimed.
    disable = outcome(first.id, ep.id, ok=False)
    await b.outbox.claim("w1", now=T0 + 61, lease_until=T0 + 90, limit=10, in_flight={})
    await b.outbox.record("w1", [_disabling(disable)])
    endpoint_row = await b.outbox.get_endpoint(ep.id)
    assert endpoint_row is not None and not endpoint_row["enabled"]
    assert endpoint_row["disabled_reason"] == "failing for 5 days"


def _disabling(o: Outcome) -> Outcome:
    return Outcome(
        message_id=o.message_id,
        endpoint_id=o.endpoint_id,
        attempt_id="att_" + secrets.token_hex(8),
        attempt=2,
        trigger=o.trigger,
        url=o.url,
        at=o.at,
        webhook_timestamp=o.webhook_timestamp,
        status_code=500,
        delivered=False,
        reason="failing for 5 days",
        latency_ms=1.0,
        response_body=None,
        message_status="failed",
        next_attempt_at=None,
        disable_endpoint="failing for 5 days",
        now=T0 + 62,
    )


async def test_leases_expire_are_renewed_and_released(backend: Backend) -> None:
    b = backend
    ep = await endpoint(b, "a1")
    msgs = [message(b, ep, f"o{i}", 1, T0 + i / 100) for i in range(3)]
    await b.outbox.enqueue(msgs)
    assert await claim(b, lease_until=T0 + 10, limit=1) == [msgs[0].id]
    assert await claim(b, "w2", lease_until=T0 + 10, limit=1) == [msgs[1].id]
    await b.outbox.renew("w2", T0 + 100)
    # w1 died: its lease ends at T0 + 10; w2's was renewed.
    assert await b.outbox.reap(T0 + 20) == 1
    # The reaped one is due from the reap on: after the never-claimed one.
    assert await claim(b, "w3", now=T0 + 20, lease_until=T0 + 50) == [msgs[2].id, msgs[0].id]
    await b.outbox.release("w3", T0 + 21)
    rows = await b.outbox.list_messages(ep.id, status="pending", order_id=None, limit=10)
    assert sorted(r["id"] for r in rows) == sorted([msgs[0].id, msgs[2].id])


async def test_replay_makes_chosen_messages_due_again(backend: Backend) -> None:
    b = backend
    ep = await endpoint(b, "a1")
    msgs = [message(b, ep, "o1", seq) for seq in (1, 2, 3)]
    await b.outbox.enqueue(msgs)
    assert len(await claim(b)) == 3
    await b.outbox.record("w1", [outcome(m.id, ep.id, ok=True) for m in msgs])
    count = await b.outbox.replay(
        ep.id,
        now=T0 + 5,
        since="2026-01-01T00:00:02.000000Z",
        until=None,
        order_id=None,
        event_id=None,
        statuses=["delivered"],
    )
    assert count == 2
    claimed = await b.outbox.claim("w1", now=T0 + 5, lease_until=T0 + 30, limit=10, in_flight={})
    assert [(c.id, c.trigger, c.attempts) for c in claimed] == [
        (msgs[1].id, "replay", 0),
        (msgs[2].id, "replay", 0),
    ]
    assert claimed[0].body == b'{"seq":2}'


async def test_app_targets_and_disabled_endpoints_keep_their_messages_skipped(
    backend: Backend,
) -> None:
    b = backend
    on, off = await endpoint(b, "a1"), await endpoint(b, "a1", enabled=False)
    targets = await b.outbox.app_targets([f"a1_{b.tag}"], "ordercast")
    assert [(t.id, t.enabled) for t in targets] == sorted([(on.id, True), (off.id, False)])
    await b.outbox.enqueue([message(b, t, "o1", 1) for t in targets])
    assert await b.outbox.count_messages(off.id) == {"skipped": 1}
    [skipped] = await b.outbox.list_messages(off.id, status=None, order_id=None, limit=5)
    assert skipped["last_error"] == "endpoint disabled"
    assert len(await claim(b)) == 1
    assert await b.outbox.app_credentials(f"a1_{b.tag}") is not None
    assert await b.outbox.app_credentials("nope") is None


async def test_depth_counts_open_messages_and_the_oldest_due_one(backend: Backend) -> None:
    b = backend
    # Counts are of the whole table (the PostgreSQL one is shared): compare with before.
    before, _ = await b.outbox.depth(T0 - 10)
    ep = await endpoint(b, "a1")
    msgs = [message(b, ep, f"o{i}", 1, T0 + i) for i in range(3)]
    await b.outbox.enqueue(msgs)
    depth, due = await b.outbox.depth(T0 - 1)
    assert depth.get("pending", 0) - before.get("pending", 0) == 3
    assert due is None  # none due yet at T0 - 1
    depth, due = await b.outbox.depth(T0 + 1.5)
    assert due == T0  # the oldest pending message, due since T0
    assert await claim(b, now=T0 + 0.5) == [msgs[0].id]
    depth, due = await b.outbox.depth(T0 + 1.5)
    assert depth.get("pending", 0) - before.get("pending", 0) == 2
    assert depth.get("delivering", 0) - before.get("delivering", 0) == 1
    assert due == T0 + 1
    await b.outbox.record("w1", [outcome(msgs[0].id, ep.id, ok=True)])
    depth, _ = await b.outbox.depth(T0 + 1.5)
    assert depth.get("delivering", 0) - before.get("delivering", 0) == 0
