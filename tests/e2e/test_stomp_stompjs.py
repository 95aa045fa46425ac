"""The STOMP gateway with the unmodified @stomp/stompjs 7.5.0 client under Node (``ws``).

Skipped locally when node or tests/node/node_modules is missing; ``make test`` installs them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ordercast.gateway.stomp import StompConfig
from ordercast.protocols.stomp import SessionConfig
from support.paths import NODE_DIR
from support.stomp import start_stomp, user_token
from support.world import World

pytestmark = pytest.mark.node


def need_stompjs() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (make test installs the Node clients)")
    if not (NODE_DIR / "node_modules" / "@stomp" / "stompjs").is_dir():
        pytest.skip("tests/node/node_modules is missing: run `cd tests/node && npm install`")


class StompJs:
    """One Node process running one stompjs Client, driven by JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.backlog: list[dict[str, Any]] = []

    async def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()

    async def _read(self, wait: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), wait)
        if not line:
            assert self.proc.stderr is not None
            raise AssertionError("node exited: " + (await self.proc.stderr.read()).decode())
        event: dict[str, Any] = json.loads(line)
        assert event["ev"] != "fatal", event
        return event

    async def expect(self, ev: str, wait: float = 15) -> dict[str, Any]:
        for i, event in enumerate(self.backlog):
            if event["ev"] == ev:
                return self.backlog.pop(i)
        while True:
            event = await self._read(wait)
            if event["ev"] == ev:
                return event
            self.backlog.append(event)

    async def connect(self, url: str, login: str, passcode: str | None = None, **kw: Any) -> Any:
        args: dict[str, Any] = {"url": url, "login": login, **kw}
        if passcode is not None:
            args["passcode"] = passcode
        await self.send(op="connect", **args)

    async def subscribe(self, destination: str, receipt: str, **headers: str) -> None:
        await self.send(op="subscribe", destination=destination, receipt=receipt, headers=headers)
        assert (await self.expect("receipt"))["id"] == receipt


@pytest.fixture
async def stompjs() -> AsyncIterator[StompJs]:
    need_stompjs()
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / "stomp_client.mjs"),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    client = StompJs(proc)
    try:
        await client.expect("ready")
        yield client
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_token_connect_order_changes_and_graceful_deactivate(
    world: World, stompjs: StompJs
) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-1")
    order = await world.order(user_id="u-1")
    await stompjs.connect(rt.gateway.url("/ws"), token, "")
    connected = await stompjs.expect("connected")
    assert connected["headers"]["version"] == "1.2"
    assert connected["subprotocol"] == "v12.stomp"  # echoed because stompjs offered it
    await stompjs.subscribe(f"/order-changes/u-1/{order['id']}", "r1")
    await stompjs.subscribe(f"/order-changes/{world.tenant_id}/u-1", "r2")  # client-library shape
    await world.move(order["id"], "ready")
    got = {}
    for _ in range(2):
        m = await stompjs.expect("message")
        got[m["headers"]["destination"]] = json.loads(m["body"])
    assert {b["status"] for b in got.values()} == {"DELIVER"}
    await stompjs.send(op="deactivate")
    await stompjs.expect("deactivated")  # resolves only after our RECEIPT to DISCONNECT
    assert (await stompjs.expect("ws_close"))["code"] == 1000


async def test_kds_app_with_venue_and_notifications(world: World, stompjs: StompJs) -> None:
    rt = world.runtime
    await start_stomp(rt)
    kds = await world.new_app("kds")
    await stompjs.connect(rt.gateway.url("/websocket"), kds["key"], kds["secret"])
    await stompjs.expect("connected")
    await stompjs.subscribe(f"/kds/{world.tenant_id}/{world.location_id}", "k")
    await stompjs.subscribe(f"/venue/{world.tenant_id}/{world.location_id}", "v")
    order = await world.order()
    body = json.loads((await stompjs.expect("message"))["body"])
    assert body["id"] == order["id"] and body["buckets"][0]["venue"] == world.location_id
    await world.http.patch(
        f"/v1/locations/{world.location_id}", headers=world.admin, json={"name": "Renamed"}
    )
    venue = json.loads((await stompjs.expect("message"))["body"])
    assert venue["type"] == "VenueSettingsChanged" and venue["name"] == "Renamed"


async def test_user_notifications(world: World, stompjs: StompJs) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-7")
    order = await world.order(user_id="u-7")
    await stompjs.connect(rt.gateway.url("/ws"), token)  # ordering-core omits passcode
    await stompjs.expect("connected")
    await stompjs.subscribe(f"/kds/{world.tenant_id}/u-7", "n1")
    r = await world.move(order["id"], "failed", errors=[{"code": "TIMEOUT", "message": "POS down"}])
    assert r.status_code == 200, r.text
    note = json.loads((await stompjs.expect("message"))["body"])
    assert note["type"] == "OrderEventError"
    assert note["codes"] == [{"code": "TIMEOUT", "message": "POS down", "args": None}]


async def test_refused_subscription_error_then_close(world: World, stompjs: StompJs) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-1")
    await stompjs.connect(rt.gateway.url("/ws"), token, "null")  # older Ordering Stack code
    await stompjs.expect("connected")
    await stompjs.send(
        op="subscribe", destination=f"/kds/{world.tenant_id}/{world.location_id}", headers={}
    )
    err = await stompjs.expect("stomp_error")
    assert err["headers"]["message"] == "forbidden"
    assert (await stompjs.expect("ws_close"))["code"] == 1008


async def test_bad_login_error_then_close(world: World, stompjs: StompJs) -> None:
    rt = world.runtime
    await start_stomp(rt)
    await stompjs.connect(rt.gateway.url("/ws"), "oct_not.valid", "")
    err = await stompjs.expect("stomp_error")
    assert err["headers"]["message"] == "authentication failed"
    assert int(err["headers"]["content-length"]) == len(err["body"].encode())
    assert (await stompjs.expect("ws_close"))["code"] == 1008


async def test_heart_beats_and_token_expiry(world: World, stompjs: StompJs) -> None:
    rt = world.runtime
    await start_stomp(rt, StompConfig(session=SessionConfig(heart_beat=(100, 100))))
    token = await user_token(rt, world.app, "u-1", ttl=2)
    await stompjs.connect(rt.gateway.url("/ws"), token, "", heartbeat=[100, 100])
    connected = await stompjs.expect("connected")
    assert connected["headers"]["heart-beat"] == "100,100"
    await stompjs.expect("pong")  # a server heart-beat reached stompjs
    await stompjs.expect("pong")
    err = await stompjs.expect("stomp_error", wait=30)
    assert err["headers"]["message"] == "access token expired"
    assert (await stompjs.expect("ws_close"))["code"] == 1008


async def test_resume_with_since_seq(world: World, stompjs: StompJs) -> None:
    rt = world.runtime
    await start_stomp(rt)
    token = await user_token(rt, world.app, "u-1")
    order = await world.order(user_id="u-1")
    for to in ("accepted", "preparing", "ready"):
        await world.move(order["id"], to)
    await stompjs.connect(rt.gateway.url("/ws"), token, "")
    await stompjs.expect("connected")
    await stompjs.subscribe(f"/order-changes/u-1/{order['id']}", "r", **{"x-since-seq": "2"})
    await world.move(order["id"], "completed", how="picked_up")
    seqs = [int((await stompjs.expect("message"))["headers"]["seq"]) for _ in range(3)]
    assert seqs == [3, 4, 5]
