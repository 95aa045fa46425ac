"""Finding 7 of issue 12: STOMP text frames with invalid UTF-8 are refused (ERROR, close
1007) as the Pusher gateway refuses them; a client that pipelines frames after an error
still reads the ERROR frame and a clean close (no TCP reset)."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from urllib.parse import urlsplit

from security.estate import Estate
from support.stomp import frame

TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8


def ws_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (RFC 6455 5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_server_frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i + 2 <= len(data):
        opcode = data[i] & 0x0F
        n = data[i + 1] & 0x7F
        j = i + 2
        if n == 126:
            n = struct.unpack("!H", data[j : j + 2])[0]
            j += 2
        elif n == 127:
            n = struct.unpack("!Q", data[j : j + 8])[0]
            j += 8
        if j + n > len(data):
            break
        out.append((opcode, data[j : j + n]))
        i = j + n
    return out


async def raw_ws(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def connected(reader: asyncio.StreamReader) -> bytes:
    """Read up to the CONNECTED frame (CONNECT is answered asynchronously)."""
    data = b""
    while not any(op == TEXT for op, _ in parse_server_frames(data)):
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, data
        data += chunk
    assert parse_server_frames(data)[0][1].startswith(b"CONNECTED"), data
    return data


async def read_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, within: float = 10
) -> tuple[bytes, BaseException | None]:
    """Everything the server sends until it closes; answers its close frame as a client
    does. The error, if the connection was reset."""
    data = b""
    answered = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while loop.time() < deadline:
            chunk = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
            if not chunk:
                return data, None
            data += chunk
            if not answered and any(op == CLOSE for op, _ in parse_server_frames(data)):
                writer.write(ws_frame(CLOSE, struct.pack("!H", 1000)))
                answered = True
    except (ConnectionResetError, BrokenPipeError) as exc:
        return data, exc
    raise AssertionError(f"the server did not close within {within} s")


async def test_invalid_utf8_text_frame_is_refused(estate: Estate) -> None:
    app = estate.app("t0", "l0", "kds")
    reader, writer = await raw_ws(estate.ws_url("/ws"))
    connect = frame("CONNECT", {"accept-version": "1.2", "login": app.key, "passcode": app.secret})
    writer.write(ws_frame(TEXT, connect.encode()))
    data = await connected(reader)
    # A SUBSCRIBE whose destination holds a byte sequence that is not UTF-8.
    bad = b"SUBSCRIBE\nid:1\ndestination:/kds/\xc3\x28\n\n\x00"
    writer.write(ws_frame(TEXT, bad))
    rest, reset = await read_until_closed(reader, writer)
    data += rest
    writer.close()
    assert reset is None
    frames = parse_server_frames(data)
    texts = [p for op, p in frames if op == TEXT]
    assert texts[0].startswith(b"CONNECTED")
    assert texts[-1].startswith(b"ERROR") and b"message:invalid UTF-8" in texts[-1]
    closes = [p for op, p in frames if op == CLOSE]
    assert closes and struct.unpack("!H", closes[0][:2])[0] == 1007
    # The same bytes in a BINARY frame are STOMP's business (bodies may be binary): a
    # well-formed SUBSCRIBE there is only refused for its (unknown) destination.
    reader, writer = await raw_ws(estate.ws_url("/ws"))
    writer.write(ws_frame(TEXT, connect.encode()))
    await connected(reader)
    writer.write(ws_frame(BINARY, bad))
    data, _ = await read_until_closed(reader, writer)
    writer.close()
    last = [p for op, p in parse_server_frames(data) if op == TEXT][-1]
    assert last.startswith(b"ERROR") and b"invalid UTF-8" not in last


async def test_error_then_pipelined_frames_still_reach_the_client(estate: Estate) -> None:
    """The client sends a bad frame and, without waiting, 2 MB more; it must still read
    the ERROR frame and a close frame, and the connection must end without a reset."""
    app = estate.app("t0", "l0", "kds")
    for _ in range(3):
        reader, writer = await raw_ws(estate.ws_url("/ws"))
        connect = frame(
            "CONNECT", {"accept-version": "1.2", "login": app.key, "passcode": app.secret}
        )
        writer.write(ws_frame(TEXT, connect.encode()))
        data = await connected(reader)
        filler = ws_frame(TEXT, frame("SEND", {"destination": "/x"}, "y" * 60_000).encode())
        writer.write(ws_frame(TEXT, b"FROB\n\n\x00") + filler * 35)
        rest, reset = await read_until_closed(reader, writer)
        data += rest
        writer.close()
        assert reset is None, f"connection reset after {len(data)} bytes"
        texts = [p for op, p in parse_server_frames(data) if op == TEXT]
        assert texts[0].startswith(b"CONNECTED")
        assert texts[1].startswith(b"ERROR") and b"message:unknown command" in texts[1], texts
        assert any(op == CLOSE for op, _ in parse_server_frames(data))
