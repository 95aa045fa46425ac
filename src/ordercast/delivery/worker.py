"""The delivery worker: claim due outbox rows, sign, POST, record, schedule retries.

One asyncio task claims batches (short transactions, no lock held while sending), one
task per claimed message sends it, and one task writes the outcomes back in batches. Per
endpoint, at most ``max_concurrency`` requests are in flight; the worker may hold up to
``depth`` times that many claimed messages per endpoint (the next ones queue behind a
per-endpoint gate, so the sender never waits for a claim round trip), and an endpoint at
its limit is skipped by the claim query, so a slow or dead endpoint only ever delays
itself. A request's slot is freed when its HTTP exchange ends, not when its outcome is
written, so recording never stalls sending (the row stays claimed until it is recorded). FIFO
endpoints get one message per order at a time, oldest first (the claim query only exposes
the head of each order's queue). Claims carry a lease the worker renews while it lives; if
the process dies, the lease expires and any worker takes the messages again: at-least-once,
with the same ``webhook-id``, which receivers dedupe on.

Messages of ``pusher`` endpoints (Pusher server webhooks) also carry ``X-Pusher-Key`` and
``X-Pusher-Signature`` (hex HMAC-SHA256 of the body with the app's secret), as Pusher's
SDK validators expect; the Standard Webhooks headers are sent too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ordercast.delivery.observe import delivery_attempt
from ordercast.delivery.sender import Sender, SendResult
from ordercast.domain.isotime import iso_from_unix
from ordercast.ports import Claimed, Outbox, Outcome
from ordercast.protocols.doshii import webhook_authorization
from ordercast.protocols.pusher.auth import webhook_signature
from ordercast.protocols.webhooks import (
    DEFAULT_POLICY,
    Action,
    FailureKind,
    RetryPolicy,
    build_headers,
    decide,
)
from ordercast.services.common import new_id

log = logging.getLogger("ordercast.delivery")

PUSHER_DIALECT = "pusher"
CREDENTIALS_TTL = 30.0  # seconds an app's key and secret are cached for pusher signatures


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    batch: int = 256
    max_in_flight: int = 512  # messages held by this worker at once, across endpoints
    flush_max: int = 512
    # Claimed messages held per endpoint, in multiples of max_concurrency. None: 2 on
    # PostgreSQL (measured: the sender never waits for a claim), 1 on SQLite (measured:
    # deeper queues made the single-writer claim path slower; docs/benchmarks.md,
    # "Figures behind code comments").
    depth: int | None = None
    coalesce_seconds: float = 0.02  # while busy, let freed room add up before claiming
    policy: RetryPolicy = DEFAULT_POLICY


def policy_from_schedule(text: str) -> RetryPolicy:
    """``ORDERCAST_WEBHOOK_RETRY_SCHEDULE``: comma-separated delays in seconds; empty = Svix's."""
    text = text.strip()
    if not text:
        return DEFAULT_POLICY
    delays = tuple(float(x) for x in text.split(",") if x.strip())
    return RetryPolicy(schedule=delays, overload_floor=min(60.0, max(delays, default=0.0)))


def active_secrets(secret: str, old: list[dict[str, object]], now: float) -> list[str]:
    """The current secret plus rotated-out ones still inside their grace period."""
    out = [secret]
    for item in old:
        expires = item.get("expires_at")
        value = item.get("secret")
        if isinstance(value, str) and isinstance(expires, int | float) and expires > now:
            out.append(value)
    return out


@dataclass
class _Stats:
    delivered: int = 0
    failed_attempts: int = 0
    claimed: int = 0


class DeliveryWorker:
    def __init__(
        self,
        outbox: Outbox,
        sender: Sender,
        config: WorkerConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        expand: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self.outbox = outbox
        # Renders deferred order changes into messages (ORDERCAST_OUTBOX_RENDER=worker):
        # ``OutboxHook.expand``, run by its own loop ahead of the claims.
        self.expand = expand
        self.sender = sender
        self.config = config or WorkerConfig()
        self.clock = clock
        self.jitter = jitter
        self.worker_id = new_id("wrk_")
        self.stats = _Stats()
        self._wake = asyncio.Event()
        self._expand_wake = asyncio.Event()
        self._flush_wake = asyncio.Event()
        # Per endpoint: claimed and not yet sent (queued or in the HTTP exchange).
        self._held: dict[str, int] = {}
        self._limits: dict[str, int] = {}
        # Per endpoint: HTTP exchanges running, and claimed messages waiting for a slot.
        self._active: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._total = 0  # claimed and not yet recorded, across endpoints
        self._results: list[Outcome] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._credentials: dict[str, tuple[str, str, float]] = {}  # app id -> key, secret, until

    # -- lifecycle -------------------------------------------------------------------

    def wake(self, *_args: object) -> None:
        """Look for due messages now (called after an order change commits)."""
        self._wake.set()
        self._expand_wake.set()

    async def start(self) -> None:
        await self.outbox.reap(self.clock())
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="webhooks-claim"),
            asyncio.create_task(self._flush_loop(), name="webhooks-flush"),
            asyncio.create_task(self._lease_loop(), name="webhooks-lease"),
            *(
                [asyncio.create_task(self._expand_loop(), name="webhooks-expand")]
                if self.expand is not None
                else []
            ),
        ]
        log.info("webhook delivery worker %s started", self.worker_id)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush()
        with contextlib.suppress(Exception):
            await self.outbox.release(self.worker_id, self.clock())
        await self.sender.close()

    # -- loops -------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        cfg = self.config
        depth = max(1, cfg.depth or self.outbox.claim_depth)
        while not self._stopping:
            room = cfg.max_in_flight - self._total
            claimed: list[Claimed] = []
            if room > 0:
                saturated = [
                    eid for eid, n in self._held.items() if n >= self._limits.get(eid, 1) * depth
                ]
                now = self.clock()
                try:
                    claimed = await self.outbox.claim(
                        self.worker_id,
                        now=now,
                        lease_until=now + cfg.lease_seconds,
                        limit=min(cfg.batch, room),
                        in_flight=dict(self._held),
                        saturated=saturated,
                        depth=depth,
                    )
                except Exception:
                    log.exception("claiming webhook messages failed; retrying")
                    await asyncio.sleep(cfg.poll_seconds)
                    continue
            for msg in claimed:
                self._limits[msg.endpoint_id] = msg.max_concurrency
                self._held[msg.endpoint_id] = self._held.get(msg.endpoint_id, 0) + 1
                self._total += 1
                task = asyncio.create_task(self._deliver(msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self.stats.claimed += len(claimed)
            if claimed and len(claimed) >= min(cfg.batch, max(room, 1)):
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), cfg.poll_seconds)
            if self._held and cfg.coalesce_seconds > 0:
                # Busy: queued messages keep the sender going meanwhile, and one larger
                # claim costs the database far less than many small ones.
                await asyncio.sleep(cfg.coalesce_seconds)

    async def _expand_loop(self) -> None:
        """Deferred changes into messages, then a claim: on a wake (a change committed in
        this process, or seen on the bus) and every poll."""
        assert self.expand is not None
        while not self._stopping:
            self._expand_wake.clear()
            try:
                expanded = await self.expand()
            except Exception:
                log.exception("rendering deferred webhook messages failed; retrying")
                expanded = 0
            if expanded:
                self._wake.set()
                continue  # until none is left
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._expand_wake.wait(), self.config.poll_seconds)

    async def _flush_loop(self) -> None:
        while not self._stopping:
            if not self._results:
                self._flush_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_wake.wait(), 1.0)
            try:
                await self._flush()
            except Exception:
                log.exception("recording webhook attempts failed; retrying")
                await asyncio.sleep(0.5)

    async def _flush(self) -> None:
        if not self._results:
            return
        batch = self._results[: self.config.flush_max]
        del self._results[: len(batch)]
        try:
            await self.outbox.record(self.worker_id, batch)
        except Exception:
            self._results[:0] = batch  # keep them; the lease keeps the rows ours
            raise
        self._total -= len(batch)
        self._wake.set()  # capacity freed; FIFO successors may be due

    async def _lease_loop(self) -> None:
        lease = self.config.lease_seconds
        while not self._stopping:
            await asyncio.sleep(max(lease / 3.0, 0.05))
            now = self.clock()
            try:
                if self._total:
                    await self.outbox.renew(self.worker_id, now + lease)
                reaped = await self.outbox.reap(now)
                if reaped:
                    log.warning("took back %d webhook messages whose claim expired", reaped)
                    self._wake.set()
            except Exception:
                log.exception("renewing webhook leases failed")

    # -- one message ---------------------------------------------------------------------

    async def _deliver(self, msg: Claimed) -> None:
        eid = msg.endpoint_id
        acquired = False
        try:
            if self._active.get(eid, 0) >= msg.max_concurrency:
                slot = asyncio.get_running_loop().create_future()
                self._waiting.setdefault(eid, deque()).append(slot)
                await slot  # the finishing request hands its slot over
            else:
                self._active[eid] = self._active.get(eid, 0) + 1
            acquired = True
            outcome = await self._attempt(msg)
        finally:
            self._release(eid, acquired)
        delivery_attempt(msg, outcome)
        self._results.append(outcome)
        self._flush_wake.set()

    def _release(self, eid: str, acquired: bool) -> None:
        """The HTTP exchange is over (or never started): free the endpoint's slot."""
        if acquired:
            waiting = self._waiting.get(eid)
            while waiting:
                slot = waiting.popleft()
                if not slot.done():
                    slot.set_result(None)  # hand over: the active count stays
                    break
            else:
                self._waiting.pop(eid, None)
                left = self._active.get(eid, 1) - 1
                if left <= 0:
                    self._active.pop(eid, None)
                else:
                    self._active[eid] = left
        held = self._held.get(eid, 1) - 1
        if held <= 0:
            self._held.pop(eid, None)
        else:
            self._held[eid] = held
        self._wake.set()

    async def _attempt(self, msg: Claimed) -> Outcome:
        now = self.clock()
        timestamp = int(now)
        attempt = msg.attempts + 1
        try:
            secrets = active_secrets(msg.secret, msg.old_secrets, now)
            headers = build_headers(msg.id, timestamp, msg.body, secrets)
            if msg.dialect == PUSHER_DIALECT:
                headers.update(await self._pusher_headers(msg))
            elif msg.auth_key or msg.auth_token:  # a Doshii partner's own credentials
                authorization = webhook_authorization(msg.auth_key, msg.auth_token)
                if authorization is not None:
                    headers["Authorization"] = authorization
            result = await self.sender.post(msg.url, msg.body, headers)
        except Exception as exc:  # never leave a claimed row without an outcome
            log.exception("webhook attempt for %s failed unexpectedly", msg.id)
            result = SendResult(
                None, FailureKind.CONNECTION, f"internal error: {exc!r}"[:300], None, None, 0.0
            )
        done = self.clock()
        decision = decide(
            attempt=attempt,
            now=done,
            jitter=self.jitter(),
            status=result.status,
            failure=result.failure,
            retry_after=result.retry_after,
            endpoint_failing_since=msg.failing_since,
            policy=self.config.policy,
        )
        delivered = decision.action is Action.DELIVERED
        if delivered:
            status, next_at = "delivered", None
            self.stats.delivered += 1
        elif decision.action is Action.RETRY:
            status, next_at = "pending", decision.retry_at
            self.stats.failed_attempts += 1
        else:
            status, next_at = "failed", None
            self.stats.failed_attempts += 1
        reason = decision.reason
        if result.error:
            reason = f"{decision.reason}: {result.error}"
        return Outcome(
            message_id=msg.id,
            endpoint_id=msg.endpoint_id,
            attempt_id=attempt_id(),
            attempt=attempt,
            trigger=msg.trigger,
            url=msg.url,
            at=iso_from_unix(now),
            webhook_timestamp=timestamp,
            status_code=result.status,
            delivered=delivered,
            reason=reason,
            latency_ms=result.latency_ms,
            response_body=result.body,
            message_status=status,
            next_attempt_at=next_at,
            disable_endpoint=decision.reason
            if decision.action is Action.DISABLE_ENDPOINT
            else None,
            now=done,
        )

    async def _pusher_headers(self, msg: Claimed) -> dict[str, str]:
        """Pusher's webhook headers: the app key, and the body signed with the app secret."""
        cached = self._credentials.get(msg.app_id)
        if cached is None or cached[2] < time.monotonic():
            found = await self.outbox.app_credentials(msg.app_id)
            if found is None:
                raise LookupError(f"app {msg.app_id} no longer exists")
            if len(self._credentials) >= 4096:
                self._credentials.clear()
            cached = self._credentials[msg.app_id] = (*found, time.monotonic() + CREDENTIALS_TTL)
        key, secret, _ = cached
        return {"X-Pusher-Key": key, "X-Pusher-Signature": webhook_signature(secret, msg.body)}


def attempt_id() -> str:
    """``att_`` + a ULID, as ``new_id`` spells it (one per attempt)."""
    return new_id("att_")
