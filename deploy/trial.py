#!/usr/bin/env python3
"""Run an ordercast cluster on one machine for a trial: N ``ordercast run`` nodes on one
PostgreSQL database and one Redis, behind nginx (Debian's package) configured from
``deploy/nginx/ordercast.conf.template``.

    python3 deploy/trial.py run --nodes 3 \\
        --database-url postgresql://postgres@127.0.0.1:5432/ordercast \\
        --bus-url redis://127.0.0.1:6379/0

prints the balancer's URLs and each node's pid, and runs until Ctrl-C. ``nginx-config``
prints the http-context file for given nodes (for a real deployment).

The test suite (tests/e2e/test_cluster.py) and ``bench cluster`` start their clusters with the
:class:`Trial` class below, so the nginx configuration shipped here is the tested one. nginx
runs as a non-daemon child with its pid file, logs and temp directories in a scratch
directory; nothing outside it is written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "nginx" / "ordercast.conf.template"


def hold_port() -> socket.socket:
    """A loopback port bound (not listening) with SO_REUSEADDR. While it is held the kernel
    gives the port to no other bind and to no outgoing connection's local end, yet a server
    that sets SO_REUSEADDR too (nginx and ``ordercast run`` both do) binds and listens on it.
    A port found free and let go is free only at that moment: a node starting for seconds
    opens many connections meanwhile, and one of them may take the port nginx is to bind."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def render_site(nodes: list[tuple[str, int, int]], http_listen: str, ws_listen: str) -> str:
    """The http-context configuration for ``nodes`` (host, HTTP port, WebSocket port)."""
    text = TEMPLATE.read_text()
    http = "\n".join(f"    server {h}:{hp} max_fails=1 fail_timeout=5s;" for h, hp, _ in nodes)
    ws = "\n".join(f"    server {h}:{wp} max_fails=1 fail_timeout=5s;" for h, _, wp in nodes)
    for marker, value in (
        ("@HTTP_SERVERS@", http),
        ("@WS_SERVERS@", ws),
        ("@HTTP_LISTEN@", http_listen),
        ("@WS_LISTEN@", ws_listen),
    ):
        text = text.replace(marker, value)
    return text


def render_main(scratch: Path, site: Path) -> str:
    """A whole nginx.conf for a non-daemon nginx whose every path is under ``scratch``."""
    temps = "\n".join(
        f"    {name}_temp_path {scratch / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {scratch / "nginx.pid"};
error_log {scratch / "error.log"} warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{temps}
    include {site};
}}
"""


@dataclass
class Node:
    index: int
    http_port: int
    ws_port: int
    proc: asyncio.subprocess.Process | None = None
    log: Path | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"


@dataclass
class Trial:
    """N nodes + nginx. ``await start()``, then ``await stop()`` (kills what is left)."""

    database_url: str
    bus_url: str
    nodes_count: int = 2
    ordercast: str = "ordercast"
    env: dict[str, str] = field(default_factory=dict)
    scratch: Path | None = None
    nodes: list[Node] = field(default_factory=list)
    nginx: asyncio.subprocess.Process | None = None
    http_port: int = 0
    ws_port: int = 0
    stop_times: dict[str, float] = field(default_factory=dict)  # seconds until each exited

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    async def start(self) -> None:
        if self.scratch is None:
            self.scratch = Path(tempfile.mkdtemp(prefix="ordercast-trial-"))
        holds = [hold_port() for _ in range(2 + 2 * self.nodes_count)]
        ports = [int(h.getsockname()[1]) for h in holds]
        try:
            self.http_port, self.ws_port = ports[0], ports[1]
            self.nodes = [
                Node(i, ports[2 + 2 * i], ports[3 + 2 * i]) for i in range(self.nodes_count)
            ]
            # All at once: migrations take a PostgreSQL advisory lock, the demo a claimed row.
            await asyncio.gather(*(self.start_node(n) for n in self.nodes))
            await self.start_nginx()
        finally:
            for hold in holds:
                hold.close()

    def node_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "ORDERCAST_DATABASE_URL": self.database_url,
                "ORDERCAST_BUS_URL": self.bus_url,
                "ORDERCAST_PUBLIC_URL": f"http://127.0.0.1:{self.http_port}",
                "ORDERCAST_LOG_LEVEL": "warning",
            }
        )
        env.update(self.env)
        return env

    async def start_node(self, node: Node) -> None:
        assert self.scratch is not None
        node.log = self.scratch / f"node{node.index}.log"
        with node.log.open("ab") as log:
            node.proc = await asyncio.create_subprocess_exec(
                self.ordercast,
                "run",
                "--host",
                "127.0.0.1",
                "--http-port",
                str(node.http_port),
                "--ws-port",
                str(node.ws_port),
                env=self.node_env(),
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
            )
        await wait_ready(f"{node.http}/ready", 60, node)

    async def start_nginx(self) -> None:
        assert self.scratch is not None
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
        site = self.scratch / "ordercast.conf"
        site.write_text(
            render_site(
                [("127.0.0.1", n.http_port, n.ws_port) for n in self.nodes],
                f"127.0.0.1:{self.http_port}",
                f"127.0.0.1:{self.ws_port}",
            )
        )
        main = self.scratch / "nginx.conf"
        main.write_text(render_main(self.scratch, site))
        self.nginx = await asyncio.create_subprocess_exec(
            binary,
            "-e",
            str(self.scratch / "error.log"),
            "-p",
            str(self.scratch),
            "-c",
            str(main),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )
        await wait_ready(f"{self.http}/ready", 20, None, self.nginx, self.scratch / "error.log")

    def kill(self, node: Node) -> None:
        """SIGKILL: the node dies without a word (no leaves, no clean stop)."""
        if node.proc is not None and node.proc.returncode is None:
            node.proc.kill()

    async def stop(self) -> None:
        if self.nginx is not None and self.nginx.returncode is None:
            self.nginx.send_signal(signal.SIGTERM)  # fast stop: it would wait for WebSockets
        for node in self.nodes:
            if node.proc is not None and node.proc.returncode is None:
                node.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for name, proc in [("nginx", self.nginx)] + [
            (f"node{n.index}", n.proc) for n in self.nodes
        ]:
            if proc is None:
                continue
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            self.stop_times[name] = round(time.monotonic() - started, 2)

    def logs(self) -> str:
        """Every node's and nginx's log (for a failing test's report)."""
        assert self.scratch is not None
        parts = []
        for path in sorted(self.scratch.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


async def wait_ready(
    url: str,
    within: float,
    node: Node | None,
    proc: asyncio.subprocess.Process | None = None,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + within
    proc = proc or (node.proc if node else None)
    log_path = log_path or (node.log if node else None)
    while time.monotonic() < deadline:
        if proc is not None and proc.returncode is not None:
            log = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise RuntimeError(f"{url}: process exited with {proc.returncode}\n{log}")
        try:
            status = await asyncio.to_thread(_status, url)
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {within} s")


def _status(url: str) -> int:
    with contextlib.closing(urllib.request.urlopen(url, timeout=2)) as r:
        status: int = r.status
        return status


# --------------------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> None:
    trial = Trial(args.database_url, args.bus_url, args.nodes, ordercast=args.ordercast)
    await trial.start()
    print(f"ordercast cluster of {args.nodes} nodes behind nginx (scratch: {trial.scratch})")
    print(f"  HTTP API   {trial.http}/v1        (ready: {trial.http}/ready)")
    print(f"  Pusher     {trial.ws}/app/{{app_key}}")
    print(f"  STOMP      {trial.ws}/ws")
    for node in trial.nodes:
        assert node.proc is not None
        print(f"  node {node.index}     pid {node.proc.pid}  {node.http}  {node.ws}")
    print("drain a node: ordercast drain PID; stop everything: Ctrl-C")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await trial.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start N nodes + nginx on this machine")
    run.add_argument("--nodes", type=int, default=2)
    run.add_argument("--database-url", required=True)
    run.add_argument("--bus-url", required=True)
    default_bin = Path(sys.executable).with_name("ordercast")
    run.add_argument(
        "--ordercast", default=str(default_bin) if default_bin.exists() else "ordercast"
    )
    conf = sub.add_parser("nginx-config", help="print the nginx http-context file")
    conf.add_argument("--node", action="append", required=True, help="HOST:HTTP_PORT:WS_PORT")
    conf.add_argument("--http-listen", default="80")
    conf.add_argument("--ws-listen", default="6001")
    args = parser.parse_args()
    if args.command == "nginx-config":
        nodes = []
        for spec in args.node:
            host, http_port, ws_port = spec.rsplit(":", 2)
            nodes.append((host, int(http_port), int(ws_port)))
        sys.stdout.write(render_site(nodes, args.http_listen, args.ws_listen))
        return
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
