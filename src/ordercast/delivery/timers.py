"""The POS flow's timer runner: claims due timers and runs them through the service.

Started by ``ordercast run``. On start it runs whatever fell due while the process was
down (a held order whose fire time passed is fired then), then sleeps until the next due
timer, at most ``poll_seconds`` (other processes may add timers), or until woken by a
committed change. Each timer's command is decided against the order, so a timer that runs
twice (a crash between the order's commit and ``finish``) changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ordercast.ports import Timers
from ordercast.services.pos_flow import PosFlowService

log = logging.getLogger("ordercast.timers")


class TimerRunner:
    def __init__(
        self,
        timers: Timers,
        service: PosFlowService,
        *,
        poll_seconds: float = 1.0,
        lease_seconds: float = 30.0,
        batch: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.timers = timers
        self.service = service
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.clock = clock
        self.ran = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self, *_args: object) -> None:
        """Look again now (called after an order change commits: it may have set a timer)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="pos-timers")
        log.info("POS flow timer runner started")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_due(self) -> int:
        """Run every timer due now; returns how many ran."""
        total = 0
        while True:
            claimed = await self.timers.claim_due(self.batch, self.lease_seconds)
            for timer in claimed:
                try:
                    result = await self.service.run_timer(timer)
                except Exception as exc:  # retry later; the lease keeps others off until then
                    log.exception(
                        "timer %s (%s) of order %s failed", timer.id, timer.kind, timer.order_id
                    )
                    backoff = min(60.0, 2.0**timer.attempt)
                    await self.timers.release(timer.id, self.clock() + backoff, repr(exc))
                    continue
                outcome = "ran" if result is not None and result.events else "noop"
                await self.timers.finish(timer.id, outcome)
                total += 1
                self.ran += 1
            if len(claimed) < self.batch:
                return total

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_due()
                due = await self.timers.next_due()
            except Exception:
                log.exception("running POS timers failed; retrying")
                due = None
            delay = self.poll_seconds
            if due is not None:
                delay = max(0.0, min(delay, due - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
