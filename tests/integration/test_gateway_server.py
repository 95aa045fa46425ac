"""The shared WebSocket server: routing by path, subprotocol negotiation, 404, lifecycle."""

from __future__ import annotations

import asyncio
import re

import pytest
from picows import WSError, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from ordercast.gateway.server import UpgradeRequest, accept, reject
from ordercast.runtime import Runtime


class Echo(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            transport.send(WSMsgType.TEXT, b"echo:" + frame.get_payload_as_bytes())


class Client(WSListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.frames.put_nowait(frame.get_payload_as_bytes())


async def test_routes_by_path_and_negotiates_subprotocols(runtime: Runtime) -> None:
    seen: list[UpgradeRequest] = []

    def stomp(request: UpgradeRequest, match: re.Match[str] | None) -> object:
        seen.append(request)
        proto = request.choose_subprotocol(("v12.stomp", "v11.stomp"))
        if proto is None:
            return reject(400, "no subprotocol")
        return accept(Echo(), subprotocol=proto)

    keys: list[str] = []

    def app(request: UpgradeRequest, match: re.Match[str] | None) -> object:
        assert match is not None
        keys.append(match["key"])
        return Echo()

    gw = runtime.gateway  # its own routes (/ws, /app/…) are not in the way of these
    gw.add_route("/proto", stomp)  # type: ignore[arg-type]
    gw.add_route(re.compile(r"/echo/(?P<key>[^/]+)"), app)  # type: ignore[arg-type]
    await gw.start(port=0)
    try:
        transport, client = await ws_connect(
            Client, gw.url("/echo/k1?protocol=7"), extra_headers={"X": "y"}
        )
        transport.send(WSMsgType.TEXT, b"hi")
        assert await asyncio.wait_for(client.frames.get(), 5) == b"echo:hi"
        transport.disconnect()
        assert keys == ["k1"]

        transport, client = await ws_connect(
            Client,
            gw.url("/proto"),
            extra_headers={"Sec-WebSocket-Protocol": "v10.stomp, v12.stomp"},
        )
        assert transport.response.headers["Sec-WebSocket-Protocol"] == "v12.stomp"
        transport.disconnect()
        assert seen[0].subprotocols == ("v10.stomp", "v12.stomp")

        with pytest.raises(WSError):
            await ws_connect(Client, gw.url("/proto"))
        with pytest.raises(WSError):
            await ws_connect(Client, gw.url("/nowhere"))
    finally:
        await gw.stop()
    assert not gw.running
