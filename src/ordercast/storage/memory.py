"""In-memory adapters: the reference implementation of ``ports.Outbox``.

:class:`MemoryOutbox` keeps endpoints, messages and attempts in dicts and follows the SQL
outbox rule for rule (``tests/integration/test_outbox_contract.py`` runs one suite against
both): due ``pending`` messages oldest first, FIFO endpoints exposing only the oldest open message
of each order, per-endpoint caps, leases, outcomes fenced by the claiming worker, replay.
It knows apps only through :meth:`add_app`. Nothing here is durable: it is for tests and
for reading what the SQL statements are meant to do.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ordercast.ports import Claimed, EndpointTarget, OutboxMessage, Outcome, Tx
from ordercast.storage.outbox import OPEN_STATUSES, message_row


@dataclass
class _App:
    tenant_id: str
    kind: str
    key: str
    secret: str
    location_ids: frozenset[str]


@dataclass
class MemoryOutbox:
    claim_depth: int = 1
    apps: dict[str, _App] = field(default_factory=dict)
    subscriptions: dict[str, set[str]] = field(default_factory=dict)  # order id -> app ids
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)  # by pos
    attempts: dict[int, dict[str, Any]] = field(default_factory=dict)  # by pos
    _pos: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_app(
        self,
        app_id: str,
        *,
        tenant_id: str,
        kind: str = "channel",
        key: str = "",
        secret: str = "",
        location_ids: Iterable[str] = (),
    ) -> None:
        self.apps[app_id] = _App(tenant_id, kind, key, secret, frozenset(location_ids))

    # -- in an order's write transaction -----------------------------------------------

    async def targets(self, tx: Tx, tenant_id: str, location_id: str) -> list[EndpointTarget]:
        found = []
        for ep in sorted(self.endpoints.values(), key=lambda e: e["id"]):
            app = self.apps.get(ep["app_id"])
            if app and app.tenant_id == tenant_id and location_id in app.location_ids:
                found.append(_target(ep, app.kind))
        return found

    async def subscribers(self, tx: Tx, order_id: str) -> set[str]:
        return set(self.subscriptions.get(order_id, ()))

    async def add(self, tx: Tx, messages: Sequence[OutboxMessage]) -> None:
        await self.enqueue(messages)

    # -- messages that belong to no order ------------------------------------------------

    async def app_targets(self, app_ids: Sequence[str], dialect: str) -> list[EndpointTarget]:
        return [
            _target(ep)
            for ep in sorted(self.endpoints.values(), key=lambda e: e["id"])
            if ep["app_id"] in app_ids and ep["dialect"] == dialect
        ]

    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        for m in messages:
            pos = next(self._pos)
            self.messages[pos] = {"pos": pos, **message_row(m)}

    # -- the delivery worker ---------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        *,
        now: float,
        lease_until: float,
        limit: int,
        in_flight: dict[str, int],
        saturated: Sequence[str] = (),
        depth: int = 1,
    ) -> list[Claimed]:
        candidates = [
            m
            for m in self.messages.values()
            if m["status"] == "pending"
            and m["next_attempt_at"] <= now
            and self.endpoints[m["endpoint_id"]]["enabled"]
            and m["endpoint_id"] not in saturated
            and not (self.endpoints[m["endpoint_id"]]["fifo"] and self._behind(m))
        ]
        candidates.sort(key=lambda m: (m["next_attempt_at"], m["pos"]))
        taken: dict[str, int] = {}
        chosen: list[Claimed] = []
        for m in candidates[:limit]:
            ep = self.endpoints[m["endpoint_id"]]
            used = in_flight.get(ep["id"], 0) + taken.get(ep["id"], 0)
            if used >= ep["max_concurrency"] * depth:
                continue
            taken[ep["id"]] = taken.get(ep["id"], 0) + 1
            m.update(status="delivering", claimed_by=worker_id, lease_until=lease_until)
            m["updated_at"] = now
            chosen.append(_claimed(m, ep))
        return chosen

    def _behind(self, m: dict[str, Any]) -> bool:
        """Whether an older open message of the same order waits for the same endpoint."""
        return any(
            p["endpoint_id"] == m["endpoint_id"]
            and p["order_id"] is not None
            and p["order_id"] == m["order_id"]
            and p["pos"] < m["pos"]
            and p["status"] in OPEN_STATUSES
            for p in self.messages.values()
        )

    async def renew(self, worker_id: str, lease_until: float) -> None:
        for m in self._claimed_by(worker_id):
            m["lease_until"] = lease_until

    async def depth(self, now: float) -> tuple[dict[str, int], float | None]:
        depth: dict[str, int] = {}
        due: float | None = None
        for m in self.messages.values():
            if m["status"] in OPEN_STATUSES:
                depth[m["status"]] = depth.get(m["status"], 0) + 1
            endpoint = self.endpoints.get(m["endpoint_id"])
            if m["status"] == "pending" and endpoint is not None and endpoint["enabled"]:
                at = float(m["next_attempt_at"])
                due = at if due is None else min(due, at)
        return depth, due if due is not None and due <= now else None

    async def reap(self, now: float) -> int:
        expired = [
            m
            for m in self.messages.values()
            if m["status"] == "delivering" and m["lease_until"] < now
        ]
        for m in expired:
            m.update(status="pending", claimed_by=None, lease_until=None, next_attempt_at=now)
        return len(expired)

    async def release(self, worker_id: str, now: float) -> None:
        for m in self._claimed_by(worker_id):
            m.update(status="pending", claimed_by=None, lease_until=None, next_attempt_at=now)

    def _claimed_by(self, worker_id: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages.values()
            if m["status"] == "delivering" and m["claimed_by"] == worker_id
        ]

    async def record(self, worker_id: str, outcomes: Sequence[Outcome]) -> None:
        by_id = {m["id"]: m for m in self.messages.values()}
        last: dict[str, Outcome] = {}
        for o in outcomes:
            pos = next(self._pos)
            self.attempts[pos] = {
                "pos": pos,
                "id": o.attempt_id,
                "message_id": o.message_id,
                "endpoint_id": o.endpoint_id,
                "attempt": o.attempt,
                "trigger": o.trigger,
                "url": o.url,
                "at": o.at,
                "webhook_timestamp": o.webhook_timestamp,
                "status_code": o.status_code,
                "outcome": "delivered" if o.delivered else "failed",
                "reason": o.reason[:500],
                "latency_ms": o.latency_ms,
                "response_body": o.response_body,
                "next_attempt_at": o.next_attempt_at,
            }
            m = by_id.get(o.message_id)
            if m is not None and m["claimed_by"] == worker_id:  # fenced
                m.update(
                    status=o.message_status,
                    attempts=o.attempt,
                    next_attempt_at=o.next_attempt_at if o.next_attempt_at is not None else o.now,
                    last_error=None if o.delivered else o.reason[:500],
                    updated_at=o.now,
                    claimed_by=None,
                    lease_until=None,
                )
            last[o.endpoint_id] = o
            if o.disable_endpoint and o.endpoint_id in self.endpoints:
                self.endpoints[o.endpoint_id].update(
                    enabled=False, disabled_reason=o.disable_endpoint[:500]
                )
        for eid, o in last.items():
            ep = self.endpoints.get(eid)
            if ep is None:
                continue
            if o.delivered:
                ep["failing_since"] = None
            elif ep["failing_since"] is None:
                ep["failing_since"] = o.now

    async def app_credentials(self, app_id: str) -> tuple[str, str] | None:
        app = self.apps.get(app_id)
        return (app.key, app.secret) if app is not None else None

    # -- endpoints, the attempts log, replay ----------------------------------------------

    async def create_endpoint(self, values: dict[str, Any]) -> None:
        self.endpoints[values["id"]] = copy.deepcopy(values)

    async def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        ep = self.endpoints.get(endpoint_id)
        return copy.deepcopy(ep) if ep is not None else None

    async def list_endpoints(self, app_id: str | None = None) -> list[dict[str, Any]]:
        eps = [e for e in self.endpoints.values() if app_id is None or e["app_id"] == app_id]
        return [copy.deepcopy(e) for e in sorted(eps, key=lambda e: (e["created_at"], e["id"]))]

    async def update_endpoint(self, endpoint_id: str, values: dict[str, Any]) -> None:
        if endpoint_id in self.endpoints:
            self.endpoints[endpoint_id].update(copy.deepcopy(values))

    async def delete_endpoint(self, endpoint_id: str) -> None:
        self.endpoints.pop(endpoint_id, None)
        for rows in (self.messages, self.attempts):
            for pos in [p for p, r in rows.items() if r["endpoint_id"] == endpoint_id]:
                del rows[pos]

    async def list_attempts(
        self,
        endpoint_id: str,
        *,
        limit: int,
        before: int | None = None,
        message_id: str | None = None,
    ) -> list[dict[str, Any]]:
        rows = [
            dict(a)
            for pos, a in sorted(self.attempts.items(), reverse=True)
            if a["endpoint_id"] == endpoint_id
            and (before is None or pos < before)
            and (message_id is None or a["message_id"] == message_id)
        ]
        return rows[:limit]

    async def list_messages(
        self,
        endpoint_id: str,
        *,
        status: str | None,
        order_id: str | None,
        limit: int,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        rows = [
            dict(m)
            for pos, m in sorted(self.messages.items(), reverse=True)
            if m["endpoint_id"] == endpoint_id
            and (status is None or m["status"] == status)
            and (order_id is None or m["order_id"] == order_id)
            and (before is None or pos < before)
        ]
        return rows[:limit]

    async def count_messages(self, endpoint_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.messages.values():
            if m["endpoint_id"] == endpoint_id:
                counts[m["status"]] = counts.get(m["status"], 0) + 1
        return counts

    async def replay(
        self,
        endpoint_id: str,
        *,
        now: float,
        since: str | None,
        until: str | None,
        order_id: str | None,
        event_id: str | None,
        statuses: Iterable[str],
    ) -> int:
        wanted = set(statuses)
        chosen = [
            m
            for m in self.messages.values()
            if m["endpoint_id"] == endpoint_id
            and m["status"] in wanted
            and (since is None or m["event_at"] >= since)
            and (until is None or m["event_at"] < until)
            and (order_id is None or m["order_id"] == order_id)
            and (event_id is None or m["event_id"] == event_id)
        ]
        for m in chosen:
            m.update(status="pending", attempts=0, next_attempt_at=now, trigger="replay")
            m.update(last_error=None, updated_at=now)
        return len(chosen)

    async def open_count(self) -> int:
        return sum(1 for m in self.messages.values() if m["status"] in OPEN_STATUSES)


def _target(ep: dict[str, Any], kind: str = "") -> EndpointTarget:
    return EndpointTarget(
        id=ep["id"],
        app_id=ep["app_id"],
        dialect=ep["dialect"],
        event_types=list(ep["event_types"]) if ep["event_types"] else None,
        enabled=bool(ep["enabled"]),
        kind=kind,
    )


def _claimed(m: dict[str, Any], ep: dict[str, Any]) -> Claimed:
    return Claimed(
        id=m["id"],
        endpoint_id=ep["id"],
        order_id=m["order_id"],
        event_id=m["event_id"],
        seq=m["seq"],
        wire_type=m["wire_type"],
        body=m["body"].encode("utf-8"),
        attempts=m["attempts"],
        trigger=m["trigger"],
        url=ep["url"],
        secret=ep["secret"],
        old_secrets=list(ep["old_secrets"] or []),
        failing_since=ep["failing_since"],
        max_concurrency=ep["max_concurrency"],
        dialect=ep["dialect"],
        app_id=ep["app_id"],
    )
