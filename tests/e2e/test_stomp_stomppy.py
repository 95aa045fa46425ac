"""The STOMP gateway with stomp.py 9 over its WebSocket transport (``WSStompConnection``).

stomp.py is threaded and blocking; its calls run in a worker thread while the gateway and the
REST client share the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from typing import Any

import pytest
import stomp
from stomp.exception import ConnectFailedException

from ordercast.gateway.stomp import StompConfig
from ordercast.protocols.stomp import SessionConfig
from support.stomp import start_stomp, user_token
from support.world import World


class Listener(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.frames: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.disconnected = threading.Event()
        self.heartbeats = 0
        self.heartbeat_seen = threading.Event()

    def on_message(self, frame: Any) -> None:
        self.frames.put(("MESSAGE", frame))

    def on_receipt(self, frame: Any) -> None:
        self.frames.put(("RECEIPT", frame))

    def on_error(self, frame: Any) -> None:
        self.frames.put(("ERROR", frame))

    def on_heartbeat(self) -> None:
        self.heartbeats += 1
        if self.heartbeats >= 2:
            self.heartbeat_seen.set()

    def on_disconnected(self) -> None:
        self.disconnected.set()

    async def next(self, kind: str, wait: float = 10) -> Any:
        got_kind, frame = await asyncio.to_thread(self.frames.get, True, wait)
        assert got_kind == kind, (got_kind, frame.headers, frame.body)
        return frame


def connection(port: int, path: str = "/ws", heartbeats: tuple[int, int] = (0, 0)) -> Any:
    conn = stomp.WSStompConnection(
        [("127.0.0.1", port)], ws_path=path, heartbeats=heartbeats, reconnect_attempts_max=1
    )
    listener = Listener()
    conn.set_listener("test", listener)
    return conn, listener


async def test_token_login_order_changes_and_disconnect_receipt(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-1")
    order = await world.order(user_id="u-1")
    conn, listener = connection(rt.gateway.bound_port)
    await asyncio.to_thread(conn.connect, token, "", wait=True)
    dest = f"/order-changes/u-1/{order['id']}"
    await asyncio.to_thread(conn.subscribe, dest, "s1", "auto", {"receipt": "sub"})
    assert (await listener.next("RECEIPT")).headers["receipt-id"] == "sub"
    await world.move(order["id"], "accepted")
    await world.move(order["id"], "preparing")
    for seq, status in ((2, "VERIFIED"), (3, "VERIFIED")):
        msg = await listener.next("MESSAGE")
        assert msg.headers["seq"] == str(seq)
        assert msg.headers["subscription"] == "s1"
        assert json.loads(msg.body)["status"] == status
    # stomp.py sends DISCONNECT with a receipt and waits for it before closing.
    await asyncio.to_thread(conn.disconnect)
    assert await asyncio.to_thread(listener.disconnected.wait, 10)


async def test_app_login_kds_venue_and_websocket_path(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    kds = await world.new_app("kds")
    conn, listener = connection(rt.gateway.bound_port, "/websocket")
    await asyncio.to_thread(conn.connect, kds["key"], kds["secret"], wait=True)
    await asyncio.to_thread(
        conn.subscribe, f"/kds/{world.tenant_id}/{world.location_id}", "k", "auto", {"receipt": "r"}
    )
    await listener.next("RECEIPT")
    order = await world.order()
    assert json.loads((await listener.next("MESSAGE")).body)["id"] == order["id"]
    await asyncio.to_thread(conn.disconnect)


async def test_client_individual_acks_are_honoured(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    kds = await world.new_app("kds")
    conn, listener = connection(rt.gateway.bound_port)
    await asyncio.to_thread(conn.connect, kds["key"], kds["secret"], wait=True)
    await asyncio.to_thread(
        conn.subscribe,
        f"/kds/{world.tenant_id}/{world.location_id}",
        "k",
        "client-individual",
        {"receipt": "r"},
    )
    await listener.next("RECEIPT")
    await world.order()
    msg = await listener.next("MESSAGE")
    assert msg.headers["ack"]
    await asyncio.to_thread(conn.ack, msg.headers["ack"], receipt="acked")
    assert (await listener.next("RECEIPT")).headers["receipt-id"] == "acked"
    await asyncio.to_thread(conn.disconnect)


async def test_refused_subscription_is_an_error_and_a_close(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-1")
    conn, listener = connection(rt.gateway.bound_port)
    await asyncio.to_thread(conn.connect, token, "", wait=True)
    await asyncio.to_thread(conn.subscribe, f"/kds/{world.tenant_id}/{world.location_id}", "x")
    err = await listener.next("ERROR")
    assert err.headers["message"] == "forbidden"
    assert await asyncio.to_thread(listener.disconnected.wait, 10)


async def test_bad_credentials_fail_the_connect(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    conn, listener = connection(rt.gateway.bound_port)
    with pytest.raises(ConnectFailedException):
        await asyncio.to_thread(conn.connect, "oct_bad.token", "", wait=True)
    err = await listener.next("ERROR")
    assert err.headers["message"] == "authentication failed"


async def test_heart_beats_and_resume(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt, StompConfig(session=SessionConfig(heart_beat=(100, 100))))
    token = await user_token(rt, world.app, "u-1")
    order = await world.order(user_id="u-1")
    await world.move(order["id"], "accepted")
    conn, listener = connection(rt.gateway.bound_port, heartbeats=(100, 100))
    await asyncio.to_thread(conn.connect, token, "", wait=True)
    await asyncio.to_thread(
        conn.subscribe, f"/order-changes/u-1/{order['id']}", "s", "auto", {"x-since-seq": "0"}
    )
    assert [(await listener.next("MESSAGE")).headers["seq"] for _ in range(2)] == ["1", "2"]
    assert await asyncio.to_thread(listener.heartbeat_seen.wait, 10)
    assert conn.is_connected()  # its own heart-beats keep the session alive
    await asyncio.to_thread(conn.disconnect)


async def test_token_expiry(world: World) -> None:
    rt = world.runtime
    await start_stomp(rt)
    # 4 s: a token of 1 s expired before CONNECT was handled on a loaded CI box (the test is
    # about a session cut at its token's expiry, not a refusal at CONNECT).
    token = await user_token(rt, world.app, "u-1", ttl=4)
    conn, listener = connection(rt.gateway.bound_port)
    await asyncio.to_thread(conn.connect, token, "", wait=True)
    err = await listener.next("ERROR", wait=30)
    assert err.headers["message"] == "access token expired"
    assert await asyncio.to_thread(listener.disconnected.wait, 10)
