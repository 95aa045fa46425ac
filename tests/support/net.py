"""Loopback networking for tests."""

from __future__ import annotations

import socket

_given: set[int] = set()  # every port handed out by this test process


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server started next), never one this
    process handed out before: the kernel may give a port it just let go to the very next
    ``bind(0)``, and two servers told the same port is a test that fails at random."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port
