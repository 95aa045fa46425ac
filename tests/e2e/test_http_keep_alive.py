"""Idle keep-alive connections on the HTTP port outlive the pools of common clients.

httpx (and Node's agents) drop an idle pooled connection after about 5 s; uvicorn's own
keep-alive timeout is also 5 s, so a client could send a request on a connection the server
was closing at that moment and get no answer (the conformance suite saw it under load as an
``httpx.ReadError`` on a POST). ordercast keeps idle connections for
``ORDERCAST_HTTP_KEEP_ALIVE_SECONDS`` (75 s by default).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live import Ordercast, running


def request(sock: socket.socket, path: str) -> bytes:
    """One GET on an open connection; the response's head and body (Content-Length)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Ordercast]:
    env: dict[str, str] = getattr(request, "param", {})
    with running(tmp_path, "keepalive", **env) as node:
        yield node


def test_idle_connection_is_still_served_after_six_seconds(server: Ordercast) -> None:
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        first = request(sock, "/health")
        assert first.startswith(b"HTTP/1.1 200"), first[:200]
        time.sleep(6)  # past httpx's 5 s pool expiry and uvicorn's default keep-alive
        second = request(sock, "/health")
        assert second.startswith(b"HTTP/1.1 200"), second[:200]
        assert b'"status"' in second


@pytest.mark.parametrize("server", [{"ORDERCAST_HTTP_KEEP_ALIVE_SECONDS": "1"}], indirect=True)
def test_the_setting_closes_idle_connections(server: Ordercast) -> None:
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        assert request(sock, "/health").startswith(b"HTTP/1.1 200")
        time.sleep(2.5)
        # The server closed its side: the next read sees the end of the stream.
        assert sock.recv(1) == b""
