"""A live ``ordercast run`` process on free loopback ports, for the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from support.net import free_port

ADMIN = "admin-token-for-pos-tests"


class Ordercast:
    """``python -m ordercast run`` as a subprocess on free ports."""

    def __init__(self, database_url: str, log: Path, **env: str) -> None:
        self.database_url = database_url
        self.log = log
        self.http_port = free_port()
        self.ws_port = free_port()
        self.env = {
            **os.environ,
            "ORDERCAST_ADMIN_TOKEN": ADMIN,
            "ORDERCAST_DEMO": "false",
            "ORDERCAST_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32",
            "ORDERCAST_WEBHOOK_RETRY_SCHEDULE": "0.2,0.3,0.5,0.5,1,1,1",
            "ORDERCAST_WEBHOOK_POLL_SECONDS": "0.1",
            "ORDERCAST_POS_TIMER_POLL_SECONDS": "0.2",
            "ORDERCAST_LOG_LEVEL": "warning",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "ordercast", "run",
            "--http-port", str(self.http_port), "--ws-port", str(self.ws_port),
            "--database-url", self.database_url,
        ]  # fmt: skip
        with self.log.open("ab") as out:  # the child has its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            assert time.monotonic() < deadline, "ordercast did not start:\n" + self.log.read_text()
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def running(tmp_path: Path, name: str, **env: str) -> Iterator[Ordercast]:
    """A started node on a SQLite file in ``tmp_path`` (log beside it), stopped afterwards."""
    node = Ordercast(f"sqlite:///{tmp_path}/{name}.db", tmp_path / f"{name}.log", **env)
    node.start()
    try:
        yield node
    finally:
        node.stop()
