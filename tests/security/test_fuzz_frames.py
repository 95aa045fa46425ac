"""A raw-frame fuzzer on both gateways: seeded, bounded. Mutated and random Pusher
messages and STOMP frames, as text and binary WebSocket frames, before and after login.
No frame may make the server fail: no "internal server error" / "Server error" reply, no
error logged by the gateways, and the gateways keep serving (a fresh client logs in and
subscribes after every connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from typing import Any

import pytest
import websockets

from ordercast.protocols.pusher import sign_channel
from security.estate import Estate
from support.stomp import frame

SEED = 1212
CONNECTIONS = 24  # per gateway
FRAMES = 40  # per connection

STOMP_COMMANDS = [
    "CONNECT", "STOMP", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "SEND", "BEGIN", "COMMIT",
    "ABORT", "DISCONNECT", "FROB", "", "subscribe", "CONNECTED", "MESSAGE",
]  # fmt: skip
STOMP_HEADERS = [
    "id", "destination", "ack", "receipt", "login", "passcode", "accept-version", "heart-beat",
    "host", "content-length", "content-type", "x-since-seq", "x-snapshot", "subscription",
    "transaction", "message-id",
]  # fmt: skip
PUSHER_EVENTS = [
    "pusher:subscribe", "pusher:unsubscribe", "pusher:ping", "pusher:pong", "pusher:signin",
    "client-x", "client-", "pusher_internal:x", "pusher:cache_miss", "x", "",
]  # fmt: skip


def noise(rng: random.Random) -> str:
    choices = [
        lambda: "",
        lambda: "x" * rng.choice([1, 10, 1000, 70_000]),
        lambda: str(rng.randint(-(2**70), 2**70)),
        lambda: "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(1, 20))),
        lambda: "\ud800",  # a lone surrogate: JSON "\\ud800" once encoded
        lambda: "/kds/" + "/".join("a" * rng.randint(0, 3) for _ in range(rng.randint(0, 5))),
        lambda: "private-o-ord_" + "0" * rng.randint(0, 40),
        lambda: "presence-r-" + "\x00" * rng.randint(0, 3),
        lambda: "\r\n\x00:\\c\\n",
        lambda: "9999-12-31T23:59:59-12:00",
    ]
    return rng.choice(choices)()


def stomp_frame(rng: random.Random, estate: Estate) -> str | bytes:
    roll = rng.random()
    if roll < 0.1:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 300)))
    if roll < 0.2:
        return "".join(chr(rng.randint(0, 127)) for _ in range(rng.randint(0, 300)))
    headers = {rng.choice(STOMP_HEADERS): noise(rng) for _ in range(rng.randint(0, 6))}
    if rng.random() < 0.3:
        headers["destination"] = rng.choice(
            [f"/kds/{o.tenant_id}/{o.location_id}" for o in estate.orders.values()]
            + [f"/order-changes/u0/{o.id}" for o in estate.orders.values()]
        )
    text = frame(rng.choice(STOMP_COMMANDS), headers, noise(rng) if rng.random() < 0.3 else "")
    if rng.random() < 0.2:
        text = text[: rng.randint(0, len(text))]
    if rng.random() < 0.1:
        return text.encode("utf-8", "surrogatepass")[:-1] + b"\xff"
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: its bytes, as a binary frame
        return text.encode("utf-8", "surrogatepass")
    return text


def pusher_message(rng: random.Random, socket_id: str, key: str, secret: str) -> str | bytes:
    roll = rng.random()
    if roll < 0.1:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 200)))
    if roll < 0.2:
        return noise(rng).encode("utf-8", "surrogatepass")
    data: Any = rng.choice(
        [
            noise(rng),
            {"channel": noise(rng), "auth": noise(rng)},
            {"channel": "private-x", "auth": sign_channel(key, secret, socket_id, "private-x")},
            {"channel": noise(rng), "auth": f"{key}:{noise(rng)}", "channel_data": noise(rng)},
            {"auth": noise(rng), "user_data": noise(rng)},
            [1, 2, 3],
            None,
            rng.randint(-5, 5),
        ]
    )
    message: dict[str, Any] = {"event": rng.choice(PUSHER_EVENTS), "data": data}
    if rng.random() < 0.3:
        message["channel"] = noise(rng)
    return json.dumps(message)


async def _read_all(ws: Any, sink: list[str], quiet: float = 0.05) -> None:
    with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
        while True:
            data = await asyncio.wait_for(ws.recv(), quiet)
            sink.append(data if isinstance(data, str) else data.decode("latin-1"))


async def _send_many(ws: Any, frames: list[str | bytes], sink: list[str]) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        for item in frames:
            await ws.send(item)
        await _read_all(ws, sink)


@pytest.mark.parametrize("gateway", ["stomp", "pusher"])
async def test_raw_frames_never_break_the_gateway(
    estate: Estate, gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(f"{SEED}-{gateway}")
    app = estate.app("t0", "l0", "kds")
    received: list[str] = []
    sent = 0
    caplog.set_level(logging.ERROR, logger="ordercast")
    for i in range(CONNECTIONS):
        if gateway == "stomp":
            async with websockets.connect(
                estate.ws_url("/ws"), ping_interval=None, max_size=None
            ) as ws:
                if i % 2:  # half of them log in first
                    login = frame(
                        "CONNECT",
                        {"accept-version": "1.2", "login": app.key, "passcode": app.secret},
                    )
                    await ws.send(login)
                    received.append(str(await asyncio.wait_for(ws.recv(), 5)))
                batch = [stomp_frame(rng, estate) for _ in range(FRAMES)]
                sent += len(batch)
                await _send_many(ws, batch, received)
            # Still serving: a well-behaved client logs in and subscribes.
            async with websockets.connect(estate.ws_url("/ws"), ping_interval=None) as ws:
                await ws.send(
                    frame(
                        "CONNECT",
                        {"accept-version": "1.2", "login": app.key, "passcode": app.secret},
                    )
                )
                assert str(await asyncio.wait_for(ws.recv(), 5)).startswith("CONNECTED")
        else:
            url = estate.ws_url(f"/app/{app.key}?protocol=7")
            async with websockets.connect(url, ping_interval=None, max_size=None) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
                socket_id = json.loads(hello["data"])["socket_id"]
                batch = [pusher_message(rng, socket_id, app.key, app.secret) for _ in range(FRAMES)]
                sent += len(batch)
                await _send_many(ws, batch, received)
            async with websockets.connect(url, ping_interval=None) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert hello["event"] == "pusher:connection_established"
    text = "\n".join(received)
    internal = text.count("internal server error") + text.count("Server error")
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    print(f"\n{gateway} fuzz: {sent} frames on {CONNECTIONS} connections, "
          f"{len(received)} frames back, {internal} internal errors, {len(logged)} logged")  # fmt: skip
    assert sent == CONNECTIONS * FRAMES
    assert internal == 0, [r for r in received if "rror" in r][:5]
    assert not logged, logged[:5]
