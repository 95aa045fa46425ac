"""Ordering Stack's own client libraries, installed from the npm registry and unmodified,
against a live `ordercast run` serving TLS on both ports (a CA and certificate made here;
Node trusts them through NODE_EXTRA_CA_CERTS).

* ``@orderingstack/pos-integrator-core`` 0.1.6: password grant (HTTP Basic app client,
  ``X-Tenant``), pull of the venue's open orders, STOMP on ``{BASE_URL}/ws`` through SockJS
  (Node 20 has no global WebSocket) and through WebSocket (``--experimental-websocket``
  gives Node 20 one), new orders on ``/kds/{tenant}/{venue}``.
* ``@orderingstack/ordering-core`` 2.0.0: a customer login over ``wss://…/websocket``
  (``/order-changes/{tenant}/{uuid}``, ``/notifications/…``, ``/steering/…``), and a KDS
  login (``/kds/…``, ``/modules/…``, ``/venues/…`` too); it drops and reconnects on any
  STOMP ERROR, so one connect for the whole run shows every subscription was accepted.
* ``sockjs-client`` alone: its websocket, xhr-streaming and xhr-polling transports.

tests/node/orderingstack_clients.cjs drives the libraries; its header says which two
native pieces of pos-integrator-core are replaced (keytar's password store, the SQLite
order table) and why.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.net import free_port
from support.paths import NODE_DIR

SCRIPT = NODE_DIR / "orderingstack_clients.cjs"
PASSWORD = "kitchen-password-1"
pytestmark = pytest.mark.node


def need_clients() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (make test installs the Node clients)")
    if not (NODE_DIR / "node_modules" / "@orderingstack" / "pos-integrator-core").is_dir():
        pytest.skip("tests/node/node_modules is missing: run `make node`")


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1 and localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ordercast test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@dataclass
class Server:
    base: str  # https://127.0.0.1:PORT
    ws_port: int
    ca: Path
    admin: dict[str, str]
    tenant_id: str = ""
    location_id: str = ""
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=self.base, verify=context, timeout=10)

    def order(self, **extra: Any) -> dict[str, Any]:
        app = self.apps["channel"]
        body = {
            "location_id": self.location_id,
            "type": "pickup",
            "items": [
                {"pos_id": "burger", "name": "Cheeseburger", "quantity": 1, "unit_price": 899}
            ],
            **extra,
        }
        with self.client() as c:
            r = c.post("/v1/orders", auth=(app["key"], app["secret"]), json=body)
        assert r.status_code == 201, r.text
        order: dict[str, Any] = r.json()
        return order

    def move(self, order_id: str, to: str) -> None:
        app = self.apps["channel"]
        with self.client() as c:
            r = c.post(
                f"/v1/orders/{order_id}/transitions",
                auth=(app["key"], app["secret"]),
                json={"to": to},
            )
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    need_clients()
    tmp = tmp_path_factory.mktemp("os_clients")
    ca, cert, key = make_certificates(tmp)
    http_port, ws_port = free_port(), free_port()
    env = {
        **os.environ,
        "ORDERCAST_DATABASE_URL": f"sqlite:///{tmp}/os.db",
        "ORDERCAST_HTTP_PORT": str(http_port),
        "ORDERCAST_WS_PORT": str(ws_port),
        "ORDERCAST_ADMIN_TOKEN": "admin-token-for-the-os-clients",
        "ORDERCAST_TLS_CERT": str(cert),
        "ORDERCAST_TLS_KEY": str(key),
        "ORDERCAST_DEMO": "false",
        "ORDERCAST_ARGON2_MEMORY_KIB": "1024",  # cheap hashing: not what this is about
        "ORDERCAST_ARGON2_TIME_COST": "1",
    }
    exe = Path(sys.executable).parent / "ordercast"
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([str(exe), "run"], env=env, cwd=tmp, stdout=log, stderr=log)
    srv = Server(
        f"https://127.0.0.1:{http_port}",
        ws_port,
        ca,
        {"Authorization": "Bearer admin-token-for-the-os-clients"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with srv.client() as c:
                    if c.get("/health").status_code == 200:
                        break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ordercast run did not start:\n" + (tmp / "server.log").read_text())
            time.sleep(0.1)
        _populate(srv)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _populate(srv: Server) -> None:
    with srv.client() as c:
        srv.tenant_id = c.post("/v1/tenants", headers=srv.admin, json={"name": "OS"}).json()["id"]
        srv.location_id = c.post(
            "/v1/locations",
            headers=srv.admin,
            json={"tenant_id": srv.tenant_id, "name": "Venue", "timezone": "Europe/Warsaw"},
        ).json()["id"]
        for kind in ("channel", "pos", "kds"):
            r = c.post(
                "/v1/apps",
                headers=srv.admin,
                json={
                    "tenant_id": srv.tenant_id,
                    "name": kind,
                    "kind": kind,
                    "location_ids": [srv.location_id],
                },
            )
            assert r.status_code == 201, r.text
            srv.apps[kind] = r.json()
        for username, roles in (("pos-1", ["staff"]), ("kds-1", ["kds"]), ("guest", ["customer"])):
            r = c.post(
                "/v1/accounts",
                headers=srv.admin,
                json={
                    "tenant_id": srv.tenant_id,
                    "username": username,
                    "password": PASSWORD,
                    "roles": roles,
                    "location_ids": [] if roles == ["customer"] else [srv.location_id],
                },
            )
            assert r.status_code == 201, r.text
            srv.accounts[username] = r.json()


class Node:
    """One run of orderingstack_clients.cjs; reads its "@@" lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.skipped: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, srv: Server, mode: str, *flags: str, **config: Any) -> Node:
        env = {
            **os.environ,
            "NODE_EXTRA_CA_CERTS": str(srv.ca),
            "OS_CONFIG": json.dumps(
                {"baseUrl": srv.base, "tenant": srv.tenant_id, "venue": srv.location_id, **config}
            ),
        }
        proc = await asyncio.create_subprocess_exec(
            "node",
            *flags,
            str(SCRIPT),
            mode,
            cwd=str(NODE_DIR),
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc)

    async def next(
        self, event: str, wait: float = 20, skip: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The next "@@" line; it must be ``event`` (lines of the ``skip`` events are passed)."""
        assert self.proc.stdout is not None
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), max(left, 0.01))
            except TimeoutError:
                pytest.fail(f"no {event!r} in time; output:\n" + "\n".join(self.lines[-60:]))
            if not raw:
                pytest.fail(f"node exited before {event!r}; output:\n" + "\n".join(self.lines))
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if not line.startswith("@@ "):
                continue
            got: dict[str, Any] = json.loads(line[3:])
            if got["event"] in skip and got["event"] != event:
                self.skipped.append(got)
                continue
            assert got["event"] == event, (got, "\n".join(self.lines[-40:]))
            return got

    async def finish(self) -> dict[str, Any]:
        """Close stdin: the script prints its summary and exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        summary = await self.next("summary")
        await asyncio.wait_for(self.proc.wait(), 10)
        return summary

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        await node.kill()


def ids(orders: list[dict[str, Any]]) -> list[str]:
    return [str(o["id"]) for o in orders]


@pytest.mark.parametrize("transport", ["sockjs", "websocket"])
async def test_pos_integrator_core(server: Server, nodes: list[Node], transport: str) -> None:
    # Before it connects: two open orders and a closed one at the venue.
    open_before = [server.order(external_order_ref=f"before-{transport}-{i}") for i in range(2)]
    closed = server.order(external_order_ref=f"closed-{transport}")
    for to in ("accepted", "preparing", "ready", "handed_off", "completed"):
        server.move(closed["id"], to)
    pos = server.apps["pos"]
    flags = ("--experimental-websocket",) if transport == "websocket" else ()
    node = await Node.start(
        server,
        "pos",
        *flags,
        username="pos-1",
        password=PASSWORD,
        key=pos["key"],
        secret=pos["secret"],
    )
    nodes.append(node)
    auth = await node.next("authorized")
    assert auth == {
        "event": "authorized",
        "UUID": server.accounts["pos-1"]["id"],
        "token_type": "bearer",
        "expires_in": 3600,
        "has_refresh_token": True,
    }
    pulled = (await node.next("pulled"))["orders"]
    # The venue's open orders (every one "completed" = submitted, so the library keeps
    # them), the closed one not among them; earlier runs' orders are still open too.
    assert set(ids(open_before)) <= set(ids(pulled))
    assert closed["id"] not in ids(pulled)
    assert all(o["completed"] and not o["closed"] for o in pulled)
    assert all(o["buckets"][0]["venue"] == server.location_id for o in pulled)
    assert (await node.next("connected"))["transport"] == transport

    new = [server.order(external_order_ref=f"new-{transport}-{i}", notes=f"n{i}") for i in range(3)]
    got = [(await node.next("message")) for _ in new]
    assert [g["order"]["id"] for g in got] == ids(new)
    assert [g["written"] for g in got] == [[o["id"]] for o in new]  # processOrder stored it
    for g, o in zip(got, new, strict=True):
        assert g["order"]["extId"] == o["external_order_ref"]
        assert g["order"]["status"] == "COMPLETED" and g["order"]["completed"] is True
        assert g["order"]["comments"] == [o["notes"]]
        assert g["order"]["buckets"][0]["lines"][0]["productId"] == "burger"
        assert g["order"]["total"] == "8.99"
    # A change to one of them follows on the same destination.
    server.move(new[1]["id"], "accepted")
    changed = (await node.next("message"))["order"]
    assert (changed["id"], changed["status"], changed["verified"]) == (
        new[1]["id"],
        "VERIFIED",
        True,
    )
    summary = await node.finish()
    assert (summary["connects"], summary["stompErrors"]) == (1, 0)


async def test_ordering_core_customer_over_wss(server: Server, nodes: list[Node]) -> None:
    guest = server.accounts["guest"]["id"]
    mine = server.order(user_id=guest, external_order_ref="guest-before")
    server.order(user_id="someone-else")
    channel = server.apps["channel"]
    node = await Node.start(
        server,
        "core",
        username="guest",
        password=PASSWORD,
        key=channel["key"],
        secret=channel["secret"],
    )
    nodes.append(node)
    assert await node.next("authorized") == {"event": "authorized", "UUID": guest, "expired": False}
    assert (await node.next("connected"))["n"] == 1
    # On connect it pulls /ordering-api/api/orders/opened: only the guest's open order.
    pulled = (await node.next("order"))["order"]
    assert (pulled["id"], pulled["extId"]) == (mine["id"], "guest-before")
    assert pulled["users"][0]["userId"] == guest

    new = server.order(user_id=guest, external_order_ref="guest-new")
    server.order(user_id="someone-else", external_order_ref="not-for-the-guest")
    got = (await node.next("order"))["order"]
    assert (got["id"], got["status"], got["extId"]) == (new["id"], "COMPLETED", "guest-new")
    for to, expected in (("accepted", "VERIFIED"), ("preparing", "VERIFIED"), ("ready", "DELIVER")):
        server.move(new["id"], to)
        change = (await node.next("order"))["order"]
        assert (change["id"], change["status"]) == (new["id"], expected)
        assert change["extra"]["x-ordercast-status"] == to
    summary = await node.finish()
    # ordering-core deactivates and reconnects on any STOMP ERROR: one connect means every
    # destination it subscribed (order-changes, notifications, steering) was accepted.
    assert (summary["connects"], summary["stompErrors"]) == (1, 0)


async def test_ordering_core_kds_login(server: Server, nodes: list[Node]) -> None:
    kds = server.apps["kds"]
    node = await Node.start(
        server,
        "core-kds",
        username="kds-1",
        password=PASSWORD,
        key=kds["key"],
        secret=kds["secret"],
    )
    nodes.append(node)
    await node.next("authorized")
    assert (await node.next("connected"))["n"] == 1
    orders = [server.order(external_order_ref=f"kds-{i}") for i in range(3)]
    seen: list[str] = []
    while len(seen) < len(orders):
        got = (await node.next("order"))["order"]
        if got["id"] in ids(orders) and got["id"] not in seen:
            seen.append(got["id"])
    assert seen == ids(orders)
    # /venues/{tenant}/{venue}: a settings change reaches onVenueUpdate.
    with server.client() as c:
        r = c.patch(
            f"/v1/locations/{server.location_id}",
            headers=server.admin,
            json={"settings": {"legacy_tracker": True}},
        )
        assert r.status_code == 200, r.text
    # ordering-core also pulls /ordering-api/api/orders/opened after it connects: the
    # venue's open orders (earlier tests' too) may reach onOrderUpdate while we wait here.
    venue = await node.next("venue", skip=("order",))
    assert {o["order"]["tenant"] for o in node.skipped} <= {server.tenant_id}, node.skipped
    assert venue["venue"]["settings"]["legacy_tracker"] is True
    summary = await node.finish()
    # Subscribed /kds, /order-changes, /notifications, /modules (its MODULE claim),
    # /steering and /venues: all accepted, never an ERROR.
    assert (summary["connects"], summary["stompErrors"]) == (1, 0)


async def test_sockjs_client_transports(server: Server, nodes: list[Node]) -> None:
    with server.client() as c:
        token = c.post(
            "/auth-oauth2/oauth/token",
            auth=(server.apps["kds"]["key"], server.apps["kds"]["secret"]),
            headers={"X-Tenant": server.tenant_id},
            data={"grant_type": "password", "username": "kds-1", "password": PASSWORD},
        ).json()["access_token"]
        info = c.get("/ws/info")
        assert info.json()["websocket"] is True
        assert info.headers["cache-control"].startswith("no-store")
    transports = ["websocket", "xhr-streaming", "xhr-polling"]
    node = await Node.start(server, "sockjs", token=token, transports=transports)
    nodes.append(node)
    for transport in transports:
        ready = await node.next("ready")
        assert ready["transport"] == ready["used"] == transport
        order = server.order(external_order_ref=f"sockjs-{transport}")
        assert (await node.next("closed"))["transport"] == transport  # closed by the client
        got = await node.next("message")
        assert got["used"] == transport
        assert got["frames"] == ["CONNECTED", "RECEIPT", "MESSAGE"]
        assert (got["order"]["id"], got["order"]["extId"]) == (order["id"], f"sockjs-{transport}")
    await node.next("done")
