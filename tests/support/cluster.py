"""Two ordercast nodes in one process, on one database and one bus, under a bus key prefix
of their own (so concurrent runs on the shared Redis never hear each other)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

from ordercast.runtime import Runtime
from ordercast.settings import Settings

ADMIN_TOKEN = "admin-token-for-tests"


def new_prefix() -> str:
    return f"octest:{secrets.token_hex(4)}:"


async def open_node(
    database_url: str, bus_url: str, prefix: str | None, **settings: Any
) -> Runtime:
    """One node; ``prefix=None`` is the deployment's default prefix."""
    return await Runtime.open(
        Settings(
            database_url=database_url,
            bus_url=bus_url,
            bus_prefix=prefix,
            admin_token=ADMIN_TOKEN,
            **settings,
        )
    )


@contextlib.asynccontextmanager
async def two_nodes(
    database_url: str, bus_url: str, *, gateways: bool = False, **settings: Any
) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Nodes A and B (closed B first), with their WebSocket gateways listening on loopback
    if ``gateways``; ``settings`` go to both (heartbeats, secret key, webhook knobs)."""
    prefix = new_prefix()
    async with contextlib.AsyncExitStack() as stack:
        a = await open_node(database_url, bus_url, prefix, **settings)
        stack.push_async_callback(a.close)
        b = await open_node(database_url, bus_url, prefix, **settings)
        stack.push_async_callback(b.close)
        if gateways:
            for rt in (a, b):
                await rt.gateway.start(host="127.0.0.1", port=0)
        yield a, b
