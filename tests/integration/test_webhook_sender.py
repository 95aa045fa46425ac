"""The webhook sender's HTTP client against real servers on loopback (raw asyncio servers,
so they can misbehave exactly): keep-alive reuse, servers closing connections, malformed
and oversized responses, timeouts, TLS verification and the SSRF guard."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ordercast.delivery.sender import RESPONSE_PREFIX_BYTES, Sender
from ordercast.protocols.netguard import parse_allow_cidrs
from ordercast.protocols.webhooks import FailureKind

LOOPBACK = parse_allow_cidrs("127.0.0.1/32")
HEADERS = {"webhook-id": "msg_1", "content-type": "application/json"}
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

Handler = Callable[["Request", asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class Request:
    head: bytes
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ln)}


@dataclass
class RawServer:
    """Reads HTTP/1.1 requests (content-length bodies) and lets ``handler`` answer each one;
    the handler returns False to stop serving that connection (it is then closed)."""

    handler: Handler
    ssl_context: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def url(self, path: str = "/hook") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                req = Request(head, b"")
                req.body = await reader.readexactly(int(req.headers.get("content-length", "0")))
                self.requests.append(req)
                if not await self.handler(req, writer):
                    return
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def reply(data: bytes, keep: bool = True) -> Handler:
    async def handler(req: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        return keep

    return handler


@pytest.fixture
async def sender() -> AsyncIterator[Sender]:
    s = Sender(LOOPBACK, timeout=2.0)
    yield s
    await s.close()


async def test_request_shape_and_keep_alive_reuse(sender: Sender) -> None:
    async with RawServer(reply(OK)) as srv:
        for i in range(5):
            body = b'{"n": %d}' % i
            result = await sender.post(srv.url("/hook/x?a=1"), body, HEADERS)
            assert result.status == 200 and result.failure is None and result.body == "ok"
        assert srv.connections == 1  # one connection for all five
        req = srv.requests[-1]
        assert req.head.startswith(b"POST /hook/x?a=1 HTTP/1.1\r\n")
        assert req.body == b'{"n": 4}'
        assert req.headers["host"] == f"127.0.0.1:{srv.port}"
        assert req.headers["webhook-id"] == "msg_1"
        assert req.headers["content-length"] == str(len(req.body))
        assert req.headers["user-agent"].startswith("ordercast-webhooks/")


async def test_concurrent_requests_use_separate_connections(sender: Sender) -> None:
    async def slow(req: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(OK)
        return True

    async with RawServer(slow) as srv:
        results = await asyncio.gather(*(sender.post(srv.url(), b"{}", HEADERS) for _ in range(4)))
        assert all(r.status == 200 for r in results)
        assert srv.connections == 4
        results = await asyncio.gather(*(sender.post(srv.url(), b"{}", HEADERS) for _ in range(4)))
        assert all(r.status == 200 for r in results)
        assert srv.connections == 4  # the pool had four idle ones


async def test_server_closing_keep_alive_connection_between_requests(sender: Sender) -> None:
    # Answers with keep-alive allowed, then closes the connection anyway.
    async with RawServer(reply(OK, keep=False)) as srv:
        for _ in range(3):
            result = await sender.post(srv.url(), b"{}", HEADERS)
            assert result.status == 200, result.error
            await asyncio.sleep(0.05)  # the FIN reaches the idle connection
        assert srv.connections == 3


async def test_connection_close_and_http_1_0_are_not_reused(sender: Sender) -> None:
    close = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    async with RawServer(reply(close)) as srv:
        for _ in range(2):
            assert (await sender.post(srv.url(), b"{}", HEADERS)).status == 200
        assert srv.connections == 2
    old = b"HTTP/1.0 204 No Content\r\n\r\n"
    async with RawServer(reply(old)) as srv:
        for _ in range(2):
            assert (await sender.post(srv.url(), b"{}", HEADERS)).status == 204
        assert srv.connections == 2


async def test_closed_before_responding_is_a_connection_failure(sender: Sender) -> None:
    async def hang_up(req: Request, writer: asyncio.StreamWriter) -> bool:
        return False

    async with RawServer(hang_up) as srv:
        result = await sender.post(srv.url(), b"{}", HEADERS)
        assert result.status is None and result.failure is FailureKind.CONNECTION
        assert result.error is not None and "before responding" in result.error


async def test_malformed_response(sender: Sender) -> None:
    async with RawServer(reply(b"HTTP/1.1 abc what\r\n\r\n")) as srv:
        result = await sender.post(srv.url(), b"{}", HEADERS)
        assert result.status is None and result.failure is FailureKind.CONNECTION
        assert result.error is not None and "malformed response" in result.error
    async with RawServer(reply(b"SSH-2.0-OpenSSH_9.6\r\n")) as srv:
        result = await sender.post(srv.url(), b"{}", HEADERS)
        assert result.failure is FailureKind.CONNECTION
        assert result.error is not None and "malformed response" in result.error


async def test_truncated_body_is_a_connection_failure(sender: Sender) -> None:
    short = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"
    async with RawServer(reply(short, keep=False)) as srv:
        result = await sender.post(srv.url(), b"{}", HEADERS)
        assert result.failure is FailureKind.CONNECTION
        assert result.error is not None and "in the middle of the response" in result.error


async def test_large_response_is_cut_at_20_kb(sender: Sender) -> None:
    big = b"x" * (RESPONSE_PREFIX_BYTES * 5)
    data = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(big), big)
    async with RawServer(reply(data)) as srv:
        result = await sender.post(srv.url(), b"{}", HEADERS)
        assert result.status == 200 and result.body == "x" * RESPONSE_PREFIX_BYTES
        result = await sender.post(srv.url(), b"{}", HEADERS)
        assert result.status == 200
        assert srv.connections == 2  # a cut-short connection is not reused


async def test_chunked_eof_delimited_and_interim_responses(sender: Sender) -> None:
    chunked = (
        b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    async with RawServer(reply(chunked)) as srv:
        for _ in range(2):
            result = await sender.post(srv.url(), b"{}", HEADERS)
            assert result.status == 202 and result.body == "hello world"
        assert srv.connections == 1
    eof = b"HTTP/1.1 200 OK\r\n\r\nuntil the end"
    async with RawServer(reply(eof, keep=False)) as srv:
        result = await sender.post(srv.url(), b"{}", HEADERS)
        assert result.status == 200 and result.body == "until the end"
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"
    async with RawServer(reply(interim)) as srv:
        result = await sender.post(srv.url(), b"{}", HEADERS)
        assert result.status == 201 and result.body == ""


async def test_no_redirects_and_retry_after(sender: Sender) -> None:
    moved = b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n"
    async with RawServer(reply(moved)) as srv:
        result = await sender.post(srv.url(), b"{}", HEADERS)
        assert result.status == 307 and len(srv.requests) == 1
    busy = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\ncontent-length: 4\r\n\r\nslow"
    async with RawServer(reply(busy)) as srv:
        result = await sender.post(srv.url(), b"{}", HEADERS)
        assert result.status == 429 and result.retry_after == "120" and result.body == "slow"


async def test_timeout() -> None:
    async def never(req: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(10)
        return False

    s = Sender(LOOPBACK, timeout=0.3)
    try:
        async with RawServer(never) as srv:
            result = await s.post(srv.url(), b"{}", HEADERS)
            assert result.failure is FailureKind.TIMEOUT and result.status is None
            assert result.error == "timeout after 0.3 s"
            assert 250 <= result.latency_ms < 2000
    finally:
        await s.close()


async def test_ssrf_guard_refuses_loopback_names_and_literals() -> None:
    s = Sender(())
    try:
        async with RawServer(reply(OK)) as srv:
            for url in (srv.url(), f"http://localhost:{srv.port}/hook"):
                result = await s.post(url, b"{}", HEADERS)
                assert result.failure is FailureKind.SSRF_REFUSED, result
                assert result.error is not None and result.error.startswith("address ")
                assert "loopback" in result.error and "refused by the SSRF guard" in result.error
            assert srv.connections == 0
    finally:
        await s.close()


async def test_connection_refused_and_bad_header(sender: Sender) -> None:
    async with RawServer(reply(OK)) as srv:
        url = srv.url()
    result = await sender.post(url, b"{}", HEADERS)
    assert result.failure is FailureKind.CONNECTION
    assert result.error is not None and "cannot connect to 127.0.0.1" in result.error
    async with RawServer(reply(OK)) as srv:
        result = await sender.post(srv.url(), b"{}", {"x-evil": "a\r\nx-injected: 1"})
        assert result.failure is FailureKind.CONNECTION and srv.requests == []


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_self_signed_fails_verification_and_trusted_works(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    default = Sender(LOOPBACK, timeout=5.0)
    trusting = Sender(LOOPBACK, timeout=5.0, ssl_context=ssl.create_default_context(cafile=cert))
    try:
        async with RawServer(reply(OK), ssl_context=server_ctx) as srv:
            result = await default.post(srv.url(), b"{}", HEADERS)
            assert result.failure is FailureKind.CONNECTION and result.status is None
            assert result.error is not None
            assert "TLS certificate verification failed for 127.0.0.1" in result.error
            assert "self-signed" in result.error or "self signed" in result.error
            assert srv.requests == []
            for _ in range(3):
                result = await trusting.post(srv.url(), b"{}", HEADERS)
                assert result.status == 200 and result.body == "ok", result.error
            assert len(srv.requests) == 3
    finally:
        await default.close()
        await trusting.close()


async def test_connection_limit_waits_then_evicts_idle_connections() -> None:
    open_now = 0
    most = 0

    async def slow(req: Request, writer: asyncio.StreamWriter) -> bool:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        await asyncio.sleep(0.05)
        open_now -= 1
        writer.write(OK)
        return True

    s = Sender(LOOPBACK, timeout=5.0, limit=2)
    try:
        async with RawServer(slow) as a, RawServer(reply(OK)) as b:
            results = await asyncio.gather(*(s.post(a.url(), b"{}", HEADERS) for _ in range(6)))
            assert all(r.status == 200 for r in results)
            assert a.connections == 2 and most == 2  # the other four waited for a slot
            # Both slots are idle connections to a; a request to b closes the oldest.
            assert (await s.post(b.url(), b"{}", HEADERS)).status == 200
            assert b.connections == 1
            assert (await s.post(a.url(), b"{}", HEADERS)).status == 200
            assert a.connections == 2  # the remaining idle one was reused
    finally:
        await s.close()


async def test_waiting_for_a_connection_slot_counts_against_the_connect_timeout() -> None:
    async def never(req: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(10)
        return False

    s = Sender(LOOPBACK, timeout=1.0, connect_timeout=0.2, limit=1)
    try:
        async with RawServer(never) as a, RawServer(reply(OK)) as b:
            first = asyncio.create_task(s.post(a.url(), b"{}", HEADERS))
            await asyncio.sleep(0.1)  # the only slot is taken by a request that never ends
            second = await s.post(b.url(), b"{}", HEADERS)
            assert second.failure is FailureKind.TIMEOUT and b.connections == 0
            assert 150 <= second.latency_ms < 800  # the connect timeout, not the total
            assert (await first).failure is FailureKind.TIMEOUT
            # The timed-out connection was closed and its slot freed.
            assert (await s.post(b.url(), b"{}", HEADERS)).status == 200
    finally:
        await s.close()
