"""The Pusher gateway's timers over real sockets: an idle client gets ``pusher:ping`` after
the activity timeout, one that does not answer is closed with 4201 after the pong timeout,
one that answers (or talks) stays open. Several sockets at once, joined at different times,
so that the sweep's schedule (a heap of deadlines, each re-read when it comes up) is what
is tested, not one socket's luck."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets

from support.world import World

ACTIVITY = 2  # seconds (an int: Pusher's connection_established carries it as one)
PONG = 1.0


async def _connect(w: World) -> tuple[websockets.ClientConnection, dict[str, Any]]:
    url = w.runtime.gateway.url(f"/app/{w.app['key']}?protocol=7")
    ws = await websockets.connect(url)
    hello = json.loads(await ws.recv())
    assert hello["event"] == "pusher:connection_established"
    return ws, json.loads(hello["data"])


async def _events(ws: websockets.ClientConnection, answer: bool, within: float) -> list[Any]:
    """What the server sent (event names, then ('closed', code)), answering pings if told."""
    seen: list[Any] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
        except TimeoutError:
            break
        except websockets.ConnectionClosed as exc:
            seen.append(("closed", exc.rcvd.code if exc.rcvd else None))
            break
        event = json.loads(raw)["event"]
        seen.append(event)
        if answer and event == "pusher:ping":
            await ws.send(json.dumps({"event": "pusher:pong", "data": {}}))
    return seen


async def test_idle_sockets_are_pinged_then_closed_4201_unless_they_answer(world: World) -> None:
    channels = world.runtime.pusher.channels
    channels.activity_timeout, channels.pong_timeout = ACTIVITY, PONG
    await world.runtime.gateway.start(port=0)
    silent, answering = [], []
    for i in range(6):  # joined ~0.4 s apart: their deadlines fall on different ticks
        ws, info = await _connect(world)
        assert info["activity_timeout"] == ACTIVITY
        (silent if i % 2 == 0 else answering).append(ws)
        await asyncio.sleep(0.4)
    # ~2 s idle + up to 1 s of tick, then 1 s for the pong + up to 1 s of tick: 6.5 s is
    # enough for the silent ones; the answering ones are pinged at least twice meanwhile
    # (each pong restarts their 2 s of activity).
    results = await asyncio.gather(
        *(_events(ws, answer=False, within=6.5) for ws in silent),
        *(_events(ws, answer=True, within=6.5) for ws in answering),
    )
    for ws in silent + answering:
        await ws.close()
    for seen in results[: len(silent)]:
        assert seen == ["pusher:ping", "pusher:error", ("closed", 4201)], seen
    for seen in results[len(silent) :]:
        assert seen.count("pusher:ping") >= 2, seen
        assert set(seen) == {"pusher:ping"}, seen  # never closed


async def test_a_talking_client_is_not_pinged(world: World) -> None:
    channels = world.runtime.pusher.channels
    channels.activity_timeout, channels.pong_timeout = ACTIVITY, PONG
    await world.runtime.gateway.start(port=0)
    talker, _ = await _connect(world)
    idle, _ = await _connect(world)
    got: list[str] = []

    async def talk() -> None:  # a message every 0.5 s: activity, the deadline moves on
        for _ in range(8):
            await talker.send(json.dumps({"event": "pusher:ping", "data": {}}))
            got.append(json.loads(await talker.recv())["event"])
            await asyncio.sleep(0.5)

    idle_seen, _ = await asyncio.gather(_events(idle, answer=False, within=4.5), talk())
    await talker.close()
    await idle.close()
    assert got == ["pusher:pong"] * 8  # our pings answered, none of the server's sent
    assert idle_seen == ["pusher:ping", "pusher:error", ("closed", 4201)], idle_seen
