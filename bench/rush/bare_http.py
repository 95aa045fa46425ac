"""The HTTP part of the dinner rush's machine bound: what this box's CPU costs per request
with nothing but the event loop and the HTTP parser, for the two kinds of HTTP a change
brings (ordercast's own figures for them are in the rush's result; this is the floor).

* ``serve``: the POS's REST call. A bare HTTP/1.1 keep-alive server (uvloop, ``httptools``
  parsing the request, one fixed ~1.4 KB JSON answer: an order resource's size) answers a
  Node client that keeps ``--conns`` connections each with one POST of a ~150-byte JSON body
  in flight. CPU µs per request: this server process's own CPU over the requests it answered.
* ``post``: one webhook delivery. A bare client (uvloop, ``httptools`` parsing the answer)
  POSTs a ~1.4 KB body with Standard Webhooks headers, each signed with HMAC-SHA256 as a
  delivery must be, on ``--conns`` keep-alive connections to the rush's Node receiver
  (204 at once). CPU µs per delivery: this client process's own CPU over its deliveries.

    .venv/bin/python -m bench.rush.bare_http     # both, JSON on stdout
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httptools
import uvloop
from bench.fanout.run import free_port, wait_port

HERE = Path(__file__).resolve().parent
ANSWER_BODY = json.dumps({"order": {"id": "ord_" + "x" * 26, "items": ["y" * 60] * 20}}).encode()
RESPONSE = (
    b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(ANSWER_BODY)).encode()
    + b"\r\n\r\n"
    + ANSWER_BODY
)
SECRET = b"k" * 32


class _Server(asyncio.Protocol):
    answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.transport.write(RESPONSE)
        _Server.answered += 1


async def _serve(port: int, warmup: float, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Server, "127.0.0.1", port, backlog=1024)
    await asyncio.sleep(warmup)
    n0, c0 = _Server.answered, time.process_time()
    await asyncio.sleep(seconds)
    n, cpu = _Server.answered - n0, time.process_time() - c0
    server.close()
    return {"requests": n, "cpu_s": cpu, "cpu_us_per_request": cpu / max(n, 1) * 1e6}


class _Client(asyncio.Protocol):
    def __init__(self, done: list[int], path: str) -> None:
        self.done = done
        self.path = path.encode()
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        msg_id = f"msg_{self.done[0]:026d}"
        ts = str(int(time.time()))
        signed = f"{msg_id}.{ts}.".encode() + ANSWER_BODY
        sig = base64.b64encode(hmac.new(SECRET, signed, hashlib.sha256).digest()).decode()
        head = (
            f"POST {self.path.decode()} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            "content-type: application/json\r\nuser-agent: bare/1\r\n"
            f"webhook-id: {msg_id}\r\nwebhook-timestamp: {ts}\r\n"
            f"webhook-signature: v1,{sig}\r\ncontent-length: {len(ANSWER_BODY)}\r\n\r\n"
        )
        self.transport.write(head.encode() + ANSWER_BODY)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.done[0] += 1
        self.send()


async def _post(port: int, conns: int, warmup: float, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    done = [0]
    transports = [
        (await loop.create_connection(lambda: _Client(done, "/wh/0"), "127.0.0.1", port))[0]
        for _ in range(conns)
    ]
    await asyncio.sleep(warmup)
    n0, c0 = done[0], time.process_time()
    await asyncio.sleep(seconds)
    n, cpu = done[0] - n0, time.process_time() - c0
    for t in transports:
        t.close()
    return {"deliveries": n, "cpu_s": cpu, "cpu_us_per_delivery": cpu / max(n, 1) * 1e6}


def measure(conns: int = 16, seconds: float = 5.0) -> dict[str, Any]:
    """Both figures, each with its Node peer in a process of its own."""
    py = sys.executable
    out: dict[str, Any] = {"conns": conns, "seconds": seconds}
    port = free_port()
    server = subprocess.Popen(
        [py, "-m", "bench.rush.bare_http", "serve", str(port), str(seconds)],
        stdout=subprocess.PIPE,
        cwd=HERE.parents[1],
    )
    wait_port(port, server)
    client = subprocess.Popen(
        ["node", str(HERE / "bare_http_client.mjs"), str(port), str(conns)],
        stdout=subprocess.DEVNULL,
    )
    try:
        raw, _ = server.communicate(timeout=seconds + 60)
        out["request"] = json.loads(raw)
    finally:
        client.kill()
        client.wait()
    port = free_port()
    receiver = subprocess.Popen(["node", str(HERE / "receiver.mjs"), str(port)])
    try:
        wait_port(port, receiver)
        raw = subprocess.run(
            [py, "-m", "bench.rush.bare_http", "post", str(port), str(seconds), str(conns)],
            capture_output=True,
            check=True,
            cwd=HERE.parents[1],
            timeout=seconds + 60,
        ).stdout
        out["delivery"] = json.loads(raw)
    finally:
        receiver.kill()
        receiver.wait()
    return out


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve"]:
        port, seconds = int(argv[1]), float(argv[2])
        print(json.dumps(uvloop.run(_serve(port, 1.0, seconds))))
    elif argv[:1] == ["post"]:
        port, seconds, conns = int(argv[1]), float(argv[2]), int(argv[3])
        print(json.dumps(uvloop.run(_post(port, conns, 1.0, seconds))))
    else:
        print(json.dumps(measure()))


if __name__ == "__main__":
    main(sys.argv[1:])
