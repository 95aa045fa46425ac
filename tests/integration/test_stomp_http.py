"""STOMP on the HTTP port (gateway/stomp_http.py, gateway/sockjs.py), on a live uvicorn.

The same STOMP machinery as the gateway port: what a subscriber on the HTTP port receives
is byte for byte what one on the gateway port receives. SockJS framing, sessions and bad
input are driven here with plain HTTP; sockjs-client itself runs in
tests/e2e/test_orderingstack_clients.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets

from ordercast.runtime import Runtime
from support.pusher import Live, start_live
from support.stomp import frame, parse, raw_client


@pytest.fixture
async def live(runtime: Runtime) -> AsyncIterator[Live]:
    async for lv in start_live(runtime):
        yield lv


def stomp_url(live: Live, path: str) -> str:
    return f"ws://127.0.0.1:{live.http_port}{path}"


async def test_same_messages_on_both_ports(live: Live) -> None:
    dest = f"/kds/{live.tenant_id}/{live.location_id}"
    key, secret = live.app["key"], live.app["secret"]
    async with (
        raw_client(stomp_url(live, "/ws"), ["v12.stomp"]) as http_ws,
        raw_client(stomp_url(live, "/websocket")) as http_ws2,
        raw_client(live.runtime.gateway.url("/ws"), ["v12.stomp"]) as gw,
    ):
        assert http_ws.ws.subprotocol == "v12.stomp"
        for c in (http_ws, http_ws2, gw):
            assert (await c.connect(key, secret)).command == "CONNECTED"
            assert (await c.subscribe(dest)).command == "RECEIPT"
        orders = [await live.order(external_order_ref=f"o{i}") for i in range(3)]
        await live.post(f"/v1/orders/{orders[1]['id']}/transitions", {"to": "accepted"})
        expected = [(o["id"], "1") for o in orders] + [(orders[1]["id"], "2")]
        seen = {}
        for name, c in (("http", http_ws), ("http2", http_ws2), ("gateway", gw)):
            got = [await c.expect("MESSAGE") for _ in expected]
            assert [(m.headers["order-id"], m.headers["seq"]) for m in got] == expected
            seen[name] = [(m.headers["message-id"], m.body) for m in got]
        assert seen["http"] == seen["http2"] == seen["gateway"]
        assert json.loads(seen["http"][3][1])["status"] == "VERIFIED"


async def test_bad_frames_get_an_error_frame_and_a_close(live: Live) -> None:
    async with raw_client(stomp_url(live, "/ws")) as c:
        await c.ws.send("NONSENSE\n\n\x00")
        err = await c.expect("ERROR")
        assert err.headers["content-type"] == "text/plain"
        assert await c.closed() == 1002
    async with raw_client(stomp_url(live, "/ws")) as c:
        assert (await c.connect("oct_garbage.sig", "null")).command == "ERROR"
        assert await c.closed() == 1008
    # Other WebSocket paths on the HTTP port stay refused.
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(stomp_url(live, "/wsx"), open_timeout=5):
            pass


def sockjs_frames(body: str) -> list[str]:
    return [line for line in body.split("\n") if line]


async def test_sockjs_xhr_session(live: Live) -> None:
    base = f"/ws/123/{'s' * 8}"
    h = live.http
    info = await h.get("/ws/info", headers={"Origin": "https://kds.example"})
    assert info.status_code == 200
    assert info.json()["websocket"] is True and info.json()["cookie_needed"] is False
    assert info.headers["access-control-allow-origin"] == "https://kds.example"
    pre = await h.options(
        "/ws/info",
        headers={"Origin": "https://kds.example", "Access-Control-Request-Headers": "x-a"},
    )
    assert pre.status_code == 204 and pre.headers["access-control-allow-headers"] == "x-a"
    assert (await h.get("/ws")).text == "Welcome to SockJS!\n"

    # Bad input: a clear 4xx, never a 500.
    assert (await h.post(f"{base}/xhr_send", content=b'["x"]')).status_code == 404  # no session
    assert (await h.post(f"{base}/eventsource")).status_code == 404  # not served
    assert (await h.get(f"{base}/xhr")).status_code == 405
    assert (await h.post("/ws/a/b.c/xhr")).status_code == 404  # dots are not ids

    opened = await h.post(f"{base}/xhr")
    assert opened.text == "o\n"
    assert opened.headers["content-type"].startswith("application/javascript")
    r = await h.post(f"{base}/xhr_send", content=b"")
    assert (r.status_code, r.text) == (400, "Payload expected.\n")
    r = await h.post(f"{base}/xhr_send", content=b"[not json")
    assert (r.status_code, r.text) == (400, "Broken JSON encoding.\n")

    # Another client address cannot use the session.
    other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=live.base_url, transport=other) as stranger:
        assert (await stranger.post(f"{base}/xhr_send", content=b'["x"]')).status_code == 404
        assert (await stranger.post(f"{base}/xhr")).status_code == 404

    connect = frame(
        "CONNECT",
        {
            "accept-version": "1.2",
            "heart-beat": "0,0",
            "login": live.app["key"],
            "passcode": live.app["secret"],
        },
    )
    dest = f"/kds/{live.tenant_id}/{live.location_id}"
    subscribe = frame("SUBSCRIBE", {"id": "s", "destination": dest, "receipt": "r"})
    # Two STOMP frames in one xhr_send, as sockjs-client batches them.
    r = await h.post(f"{base}/xhr_send", content=json.dumps([connect, subscribe]))
    assert r.status_code == 204
    frames: list[str] = []
    while len(frames) < 2:
        got = sockjs_frames((await h.post(f"{base}/xhr")).text)
        frames += [m for f in got if f.startswith("a") for m in json.loads(f[1:])]
    assert [parse(m.encode()).command for m in frames] == ["CONNECTED", "RECEIPT"]  # type: ignore[union-attr]

    # xhr_streaming takes over as the receiver; a second receiver is told one is open.
    async with h.stream("POST", f"{base}/xhr_streaming") as stream:
        chunks = stream.aiter_text()
        buffered = ""
        while "\n" not in buffered:
            buffered += await anext(chunks)
        assert buffered.startswith("h" * 2048 + "\n")  # the prelude
        second = await h.post(f"{base}/xhr")
        assert second.text == 'c[2010,"Another connection still open"]\n'
        orders = [await live.order(external_order_ref=f"x{i}") for i in range(2)]
        got_ids: list[str] = []
        while len(got_ids) < 2:
            *lines, buffered = buffered.split("\n")
            for f in lines:
                if f.startswith("a"):
                    got_ids += [parse(m.encode()).headers["order-id"] for m in json.loads(f[1:])]  # type: ignore[union-attr]
            if len(got_ids) < 2:
                buffered += await anext(chunks)
        assert got_ids == [o["id"] for o in orders]

        # A protocol error: the STOMP connection sends ERROR and closes, and the SockJS
        # session says goodbye on the stream and is gone.
        await h.post(f"{base}/xhr_send", content=json.dumps(["NONSENSE\n\n\x00"]))
        while 'c[3000,"Go away!"]' not in buffered:
            buffered += await anext(chunks)
        lines = buffered.split("\n")
        errors = [parse(m.encode()) for f in lines if f.startswith("a") for m in json.loads(f[1:])]
        assert [e.command for e in errors if e] == ["ERROR"]
    assert (await h.post(f"{base}/xhr_send", content=b'["x"]')).status_code == 404


async def test_sockjs_websocket_transport_frames(live: Live) -> None:
    url = stomp_url(live, f"/ws/0/{'w' * 8}/websocket")
    async with websockets.connect(url, open_timeout=5) as ws:
        assert await ws.recv() == "o"
        connect = frame(
            "CONNECT",
            {
                "accept-version": "1.2",
                "heart-beat": "0,0",
                "login": live.app["key"],
                "passcode": live.app["secret"],
            },
        )
        await ws.send(json.dumps([connect]))
        got = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(got, str) and got.startswith("a[")
        assert parse(json.loads(got[1:])[0].encode()).command == "CONNECTED"  # type: ignore[union-attr]
        await ws.send("not json")  # broken framing ends the session and its socket
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(10):
                await asyncio.wait_for(ws.recv(), 10)
    # The ended session is gone: the same id now opens a new one.
    async with websockets.connect(url, open_timeout=5) as ws:
        assert await ws.recv() == "o"  # the old session ended: this is a new one
