"""Baseline: python-socketio (ASGI on uvicorn + uvloop), one room, ``emit`` to the room.

``python bench/fanout/sio_server.py PORT``. Subscribers emit ``join``; the publisher emits
``publish`` and the server re-emits ``bench`` to the room (skipping the publisher).
"""

from __future__ import annotations

import sys

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")
app = socketio.ASGIApp(sio)


@sio.on("join")  # type: ignore[untyped-decorator]
async def join(sid: str, room: str) -> None:
    await sio.enter_room(sid, room)
    await sio.emit("joined", room, to=sid)


@sio.on("publish")  # type: ignore[untyped-decorator]
async def publish(sid: str, room: str, data: str) -> None:
    await sio.emit("bench", data, room=room, skip_sid=sid)


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        log_level="warning",
        backlog=4096,
        ws_ping_interval=None,
    )
