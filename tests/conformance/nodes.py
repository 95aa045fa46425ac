"""Live ordercast nodes for the conformance suite: real ``ordercast run`` subprocesses.

Three configurations (:data:`CONFIGS`): SQLite + ``memory://`` (one node); PostgreSQL +
``redis://`` (one node); two nodes on one PostgreSQL database and one Redis (commands go to
node A, every subscriber connects to node B). Each run gets its own database and its own
``ORDERCAST_BUS_PREFIX`` so concurrent runs on the shared Redis never see each other.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from support.net import free_port
from support.services import fresh_postgres

ADMIN = "admin-token-for-conformance"
CONFIGS = ("sqlite", "postgres", "two-nodes")


@dataclass
class Node:
    name: str
    database_url: str
    log: Path
    env_extra: dict[str, str]
    http_port: int = field(default_factory=free_port)
    ws_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def start(self) -> None:
        """Start and wait for /health; new ports when the free ones were taken meanwhile
        (other test runs on the machine pick free ports too)."""
        for attempt in range(3):
            if self._start_once():
                return
            assert attempt < 2, f"{self.name} could not bind:\n{self.log.read_text()[-4000:]}"
            self.http_port, self.ws_port = free_port(), free_port()

    def _start_once(self) -> bool:
        env = {
            **os.environ,
            "ORDERCAST_ADMIN_TOKEN": ADMIN,
            "ORDERCAST_DEMO": "false",
            "ORDERCAST_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32",
            "ORDERCAST_WEBHOOK_RETRY_SCHEDULE": "0.2,0.3,0.3,0.5,0.5,0.5,1,1,1,1,1,1",
            "ORDERCAST_WEBHOOK_POLL_SECONDS": "0.1",
            "ORDERCAST_POS_TIMER_POLL_SECONDS": "0.2",
            "ORDERCAST_LOG_LEVEL": "warning",
            **self.env_extra,
        }
        cmd = [
            sys.executable, "-m", "ordercast", "run",
            "--http-port", str(self.http_port), "--ws-port", str(self.ws_port),
            "--database-url", self.database_url,
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 40
        while True:
            if self.proc.poll() is not None:
                text = self.log.read_text()
                if "address already in use" in text.lower():
                    return False
                raise AssertionError(f"{self.name} exited:\n{text[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return True
            assert time.monotonic() < deadline, (
                f"{self.name} did not start:\n{self.log.read_text()}"
            )
            time.sleep(0.05)

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Cluster:
    """``writer`` takes the REST commands; ``reader`` serves every subscriber."""

    config: str
    nodes: list[Node]

    @property
    def writer(self) -> Node:
        return self.nodes[0]

    @property
    def reader(self) -> Node:
        return self.nodes[-1]

    def logs(self) -> str:
        return "\n".join(f"--- {n.name} log: {n.log}" for n in self.nodes)


@contextlib.asynccontextmanager
async def cluster(config: str, tmp: Path) -> AsyncIterator[Cluster]:
    assert config in CONFIGS, config
    common = {
        "ORDERCAST_SECRET_KEY": secrets.token_hex(32),
        "ORDERCAST_BUS_PREFIX": f"conformance-{secrets.token_hex(6)}",
    }
    async with contextlib.AsyncExitStack() as stack:
        if config == "sqlite":
            nodes = [Node("node-a", f"sqlite:///{tmp}/conformance.db", tmp / "node-a.log", common)]
        else:
            from support.services import REDIS_URL, need_service

            need_service("Redis", "127.0.0.1", 6379)
            url = await stack.enter_async_context(fresh_postgres("ordercast_conf"))
            env = {**common, "ORDERCAST_BUS_URL": REDIS_URL}
            nodes = [Node("node-a", url, tmp / "node-a.log", env)]
            if config == "two-nodes":
                nodes.append(Node("node-b", url, tmp / "node-b.log", env))
        try:
            for node in nodes:  # one at a time: the first one migrates the database
                node.start()
            yield Cluster(config, nodes)
        finally:
            for node in nodes:
                node.stop()
