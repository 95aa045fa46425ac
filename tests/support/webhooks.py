"""Helpers for the webhook tests: a real aiohttp receiver on loopback, and a runtime set up
for delivery (loopback allowed, fast retry schedule)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook

from ordercast.runtime import Runtime
from ordercast.settings import Settings
from support.net import free_port
from support.services import fresh_postgres

ADMIN = "admin-token-for-tests"
FAST_RETRIES = "0.2,0.3,0.5,0.5,1,1,1"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


Responder = Callable[[Received], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class Receiver:
    """An aiohttp.web server on 127.0.0.1 that records every request it gets."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    responder: Responder | None = None
    delay: float = 0.0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        item = Received(
            {k.lower(): v for k, v in request.headers.items()}, await request.read(), request.path
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.responder is not None:
            result = self.responder(item)
            response = await result if asyncio.iscoroutine(result) else result
            assert isinstance(response, web.StreamResponse)
            if 200 <= response.status < 300:
                self.received.append(item)
            return response
        self.received.append(item)
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def verify_all(self, *secrets: str) -> None:
        """Every recorded request verifies with the standardwebhooks library, with at
        least one of ``secrets`` (each tried alone)."""
        for item in self.received:
            errors = []
            for secret in secrets:
                try:
                    Webhook(secret).verify(item.body, item.headers)
                    break
                except Exception as exc:
                    errors.append(repr(exc))
            else:
                raise AssertionError(f"{item.webhook_id} did not verify: {errors}")


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], limit: float = 20.0, what: str = ""
) -> None:
    """Poll until ``predicate`` holds (a deadline for hangs, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


def webhook_settings(database_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_token": ADMIN,
        "webhook_allow_cidrs": "127.0.0.1/32",
        "webhook_retry_schedule": FAST_RETRIES,
        "webhook_poll_seconds": 0.1,
        "webhook_lease_seconds": 5.0,
        "webhook_timeout": 5.0,
    }
    values.update(extra)
    return Settings(**values)


async def open_runtime(database_url: str, **extra: Any) -> AsyncIterator[Runtime]:
    rt = await Runtime.open(webhook_settings(database_url, **extra))
    try:
        yield rt
    finally:
        await rt.close()


async def fresh_database_url(kind: str, tmp_path: Any) -> AsyncIterator[str]:
    """SQLite in ``tmp_path``, or a brand-new PostgreSQL database dropped afterwards (each
    test gets its own tables, so no worker ever sees another test's messages)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/webhooks.db"
        return
    async with fresh_postgres("ordercast_wh") as url:
        yield url
