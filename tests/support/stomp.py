"""Helpers for the STOMP gateway tests: a raw STOMP-over-WebSocket client on `websockets`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from ordercast.gateway.stomp import StompConfig, StompGateway
from ordercast.runtime import Runtime


@dataclass
class Frame:
    command: str
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


def parse(data: bytes) -> Frame | None:
    """One server frame (the gateway sends one per WebSocket message); None = heart-beat."""
    if data in (b"\n", b"\r\n"):
        return None
    head, _, rest = data.partition(b"\n\n")
    lines = head.decode().split("\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers.setdefault(key, value)
    if "content-length" in headers:
        n = int(headers["content-length"])
        body = rest[:n]
        assert rest[n : n + 1] == b"\x00", "NUL must follow a content-length body"
    else:
        body = rest[: rest.index(b"\x00")]
    return Frame(lines[0], headers, body)


def frame(command: str, headers: dict[str, str] | None = None, body: str = "") -> str:
    lines = [command] + [f"{k}:{v}" for k, v in (headers or {}).items()]
    return "\n".join(lines) + "\n\n" + body + "\x00"


@dataclass
class RawClient:
    ws: ClientConnection
    heartbeats: int = 0
    frames: list[Frame] = field(default_factory=list)

    async def send(
        self, command: str, headers: dict[str, str] | None = None, body: str = ""
    ) -> None:
        await self.ws.send(frame(command, headers, body))

    async def recv(self, wait: float = 10) -> Frame:
        """The next frame, skipping heart-beats."""
        while True:
            data = await asyncio.wait_for(self.ws.recv(), wait)
            raw = data.encode() if isinstance(data, str) else data
            parsed = parse(raw)
            if parsed is None:
                self.heartbeats += 1
                continue
            self.frames.append(parsed)
            return parsed

    async def expect(self, command: str, wait: float = 10) -> Frame:
        got = await self.recv(wait)
        assert got.command == command, (got.command, got.headers, got.body)
        return got

    async def closed(self, wait: float = 10) -> int | None:
        """Wait for the server to close; the close code."""
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(self.ws.recv(), wait)
        return self.ws.close_code

    async def connect(self, login: str, passcode: str | None = None, **extra: str) -> Frame:
        headers = {"accept-version": "1.2,1.1,1.0", "heart-beat": "0,0", "login": login}
        if passcode is not None:
            headers["passcode"] = passcode
        headers.update(extra)
        await self.send("CONNECT", headers)
        return await self.recv()

    async def subscribe(self, destination: str, sub_id: str = "sub-0", **extra: str) -> Frame:
        await self.send(
            "SUBSCRIBE",
            {"id": sub_id, "destination": destination, "receipt": f"r-{sub_id}", **extra},
        )
        return await self.recv()


@contextlib.asynccontextmanager
async def raw_client(
    url: str,
    subprotocols: list[str] | None = None,
    max_queue: int = 16,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[RawClient]:
    kwargs: dict[str, Any] = {"open_timeout": 10, "ping_interval": None, "max_queue": max_queue}
    if subprotocols:
        kwargs["subprotocols"] = subprotocols
    if headers:
        kwargs["additional_headers"] = headers
    async with websockets.connect(url, **kwargs) as ws:
        yield RawClient(ws)


async def start_stomp(runtime: Runtime, config: StompConfig | None = None) -> StompGateway:
    gateway = runtime.stomp  # installed by Runtime.open
    if config is not None:
        gateway.config = config
    if not runtime.gateway.running:
        await runtime.gateway.start(port=0)
    return gateway


async def user_token(
    runtime: Runtime, world_app: dict[str, Any], user_id: str, ttl: int = 600
) -> str:
    from ordercast.services.directory import app_principal

    app = await runtime.store.get_app(world_app["id"])
    assert app is not None
    token, _ = runtime.directory.issue_user_token(app_principal(app), user_id, ttl)
    return token
