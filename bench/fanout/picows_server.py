"""Baseline: a bare Pusher-protocol broadcast loop on picows (public channel, no auth, no
storage): the ceiling for ordercast's gateway. ``python bench/fanout/picows_server.py PORT``

Every non-``pusher:`` message from a client is encoded once and sent to every other
subscriber with one ``transport.send`` each.
"""

from __future__ import annotations

import itertools
import json
import sys

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from ordercast.protocols.pusher import encode_event
from ordercast.protocols.pusher.messages import (
    encode_connection_established,
    encode_subscription_succeeded,
)

subs: dict[int, WSTransport] = {}
ids = itertools.count(1)


class Conn(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.id = next(ids)
        transport.send(WSMsgType.TEXT, encode_connection_established(f"1.{self.id}", 120))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        m = json.loads(frame.get_payload_as_bytes())
        event = m["event"]
        if event == "pusher:subscribe":
            subs[self.id] = transport
            transport.send(WSMsgType.TEXT, encode_subscription_succeeded(m["data"]["channel"]))
        elif event == "pusher:ping":
            transport.send(WSMsgType.TEXT, b'{"event":"pusher:pong","data":"{}"}')
        elif not event.startswith("pusher:"):
            out = encode_event(event, m["channel"], m["data"]).encode()
            me = self.id
            for sid, t in subs.items():
                if sid != me:
                    t.send(WSMsgType.TEXT, out)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        subs.pop(self.id, None)


async def main(port: int) -> None:
    server = await ws_create_server(lambda _r: Conn(), "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
