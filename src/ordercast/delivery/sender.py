"""The HTTP side of webhook delivery: a small keep-alive HTTP/1.1 client with an SSRF guard.

Why not aiohttp (used here until this change): a webhook POST needs very little of a
general HTTP client — one request shape, no cookies, redirects, proxies, compression,
streaming uploads or tracing — yet aiohttp's request path was most of the delivery
worker's CPU. This client does the same job in a fraction of that (figures in
docs/benchmarks.md, "Webhook delivery"). What is written by hand here is
only what no maintained library offers in this shape: the request bytes (a fixed head, the
caller's headers, the body) and a per-origin pool of keep-alive connections on the event
loop's own transports. Parsing the response — the part that must be right against any
server — is ``httptools`` (the maintained llhttp binding uvicorn uses); TLS is the
standard library's ``ssl`` through ``loop.create_connection`` with certificate and host
name verification.

Behaviour:

* SSRF guard at connect time. The host is resolved here, every resolved address goes
  through :func:`ordercast.protocols.netguard.check_address`, and the socket is connected
  to exactly that address (``sock_connect``), then handed to the loop (with TLS for
  https). No check-then-connect gap for DNS rebinding; pooled connections only ever point
  at vetted addresses. If every address is refused the attempt fails with the guard's
  reason.
* One total timeout per attempt (15 s by default) covering DNS, connect, TLS, sending and
  the response; connecting alone is also bounded by ``connect_timeout``.
* Redirects are not followed (a 3xx is returned as is, and the retry policy treats it as
  a failure); proxies from the environment are ignored.
* At most the first 20 KB of the response body is read and recorded. A longer response is
  cut there and its connection closed.
* A connection goes back to the pool only after a complete response that allows keep-alive
  (``httptools``' ``should_keep_alive``). Idle connections are reused newest first and
  dropped after ``IDLE_SECONDS`` (shorter than the common 5 s server keep-alive, so a
  request is not sent on a connection the server is about to close). Data arriving on an
  idle connection, or the server closing it, discards it.
* At most ``limit`` (512) connections are open at once, as aiohttp's connector allowed:
  over it, the oldest idle connection is closed, or the request waits for one to be freed
  (within its connect timeout).
* A request is never re-sent automatically, even when a reused connection turns out to be
  closed before any response byte: the server may have processed it, and the outbox
  retries anyway (with the same ``webhook-id``). aiohttp did not retry POSTs either.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import httptools

from ordercast import __version__
from ordercast.protocols.netguard import Network, check_address
from ordercast.protocols.webhooks import FailureKind

RESPONSE_PREFIX_BYTES = 20_000
MAX_RESPONSE_HEAD_BYTES = 64 * 1024  # status line and headers; more is a malformed response
IDLE_SECONDS = 4.0  # an idle keep-alive connection older than this is not reused
DNS_TTL_SECONDS = 10.0
_MARKER = "refused by the SSRF guard"
_USER_AGENT = f"ordercast-webhooks/{__version__}"
# RFC 3986 characters left as they are in a request target (and "%" for existing escapes).
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


class SsrfRefused(OSError):
    """Every resolved address of the endpoint was refused by the SSRF guard."""


class ResponseError(Exception):
    """The server's response was malformed, or the connection ended in the middle of it."""


@dataclass(frozen=True, slots=True)
class SendResult:
    status: int | None
    failure: FailureKind | None
    error: str | None  # why there was no response, for the attempt log
    retry_after: str | None
    body: str | None  # the first 20 KB of the response, decoded leniently
    latency_ms: float


@dataclass(frozen=True, slots=True)
class _Target:
    """One endpoint URL, parsed once: where to connect and the request head's fixed part."""

    origin: tuple[str, str, int]  # scheme, host, port: the connection pool's key
    host: str  # for DNS, the SSRF guard and TLS server name (no brackets)
    port: int
    tls: bool
    head: bytes  # "POST <target> HTTP/1.1\r\nhost: …\r\n…" up to the caller's headers


def _parse_target(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {scheme!r}")
    host = parts.hostname
    if not host:
        raise ValueError("URL has no host")
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    tls = scheme == "https"
    default_port = 443 if tls else 80
    port = parts.port or default_port
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header = f"{host_header}:{port}"
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_QUERY_SAFE)
    head = (
        f"POST {target} HTTP/1.1\r\nhost: {host_header}\r\nuser-agent: {_USER_AGENT}\r\n"
        "accept: */*\r\n"
    ).encode("ascii")
    return _Target((scheme, host, port), host, port, tls, head)


def _header_block(headers: Mapping[str, str], body_length: int) -> bytes:
    lines = [f"content-length: {body_length}\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
            raise ValueError(f"header {name!r} has a line break or a bad name")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``httptools`` parses what the server sends."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.on_gone: Callable[[], None] | None = None  # frees the sender's connection slot
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.retry_after: str | None = None
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_size = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.truncated = False
        self.framed = False  # content-length or chunked: the body does not end at EOF
        self._name = b""

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.close()  # nothing was asked: data on an idle connection makes it unusable
            return
        if not self.headers_done:
            self.head_size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ResponseError("malformed response: unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(ResponseError(f"malformed response: {exc}"))
        else:
            if self.truncated:
                self.close()
            elif not self.headers_done and self.head_size > MAX_RESPONSE_HEAD_BYTES:
                self._fail(ResponseError("malformed response: status line and headers too long"))

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost settles any pending response

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and not self.framed:
            self.complete = True  # a body delimited by the end of the connection
            waiter.set_result(None)
            return
        where = "in the middle of the response" if self.head_size else "before responding"
        detail = f": {exc}" if exc else ""
        waiter.set_exception(ResponseError(f"server closed the connection {where}{detail}"))

    # -- httptools callbacks -----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"retry-after":
            if self.retry_after is None:  # the first one, as aiohttp's headers.get gave
                self.retry_after = value.decode("latin-1")
        elif name == b"content-length" or name == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        room = RESPONSE_PREFIX_BYTES - self.body_size
        if room <= 0:
            return
        if len(body) >= room:
            self.body.append(body[:room])
            self.body_size = RESPONSE_PREFIX_BYTES
            self.truncated = True  # enough: stop here, this connection is not reused
            self._settle()
            return
        self.body.append(body)
        self.body_size += len(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and self.status != 101:
            self._reset()  # an interim response (100 Continue, 103 Early Hints): keep reading
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # (the parser resets after this)
        self._settle()

    # -- ours ----------------------------------------------------------------------------

    def _settle(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self._gone()
        if self.transport is not None:
            self.transport.close()

    def _gone(self) -> None:
        self.closed = True
        on_gone, self.on_gone = self.on_gone, None
        if on_gone is not None:
            on_gone()

    def on_timeout(self) -> None:
        self._fail(TimeoutError())

    @property
    def reusable(self) -> bool:
        return (
            self.complete
            and not self.truncated
            and not self.closed
            and self.status != 101
            and self.keep_alive
        )


class Sender:
    def __init__(
        self,
        allow_cidrs: Sequence[Network] = (),
        *,
        timeout: float = 15.0,
        connect_timeout: float = 10.0,
        limit: int = 512,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.allow_cidrs = tuple(allow_cidrs)
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self._limit = limit  # open connections, across origins (busy and idle)
        self._open = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._ssl = ssl_context
        self._targets: dict[str, _Target] = {}  # parsed once per endpoint URL
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[int, str]]]] = {}
        self._last_sweep = 0.0

    # -- pool ----------------------------------------------------------------------------

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= 4096:
                self._targets.clear()
            target = self._targets[url] = _parse_target(url)
        return target

    def _checkout(self, origin: tuple[str, str, int], now: float) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # newest first: the likeliest to be still open
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > IDLE_SECONDS:
                conn.close()
                continue
            return conn
        return None

    def _checkin(self, conn: _Connection, now: float) -> None:
        if not conn.reusable:
            conn.close()
            return
        conn.waiter = None
        conn._reset()
        conn.idle_since = now
        self._idle.setdefault(conn.origin, deque()).append(conn)
        if self._slot_waiters:
            self._wake_one()  # a request waiting for a slot may use or evict this one
        if now - self._last_sweep > IDLE_SECONDS:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Close idle connections past IDLE_SECONDS (oldest are at the left of each deque)."""
        self._last_sweep = now
        for origin, idle in list(self._idle.items()):
            while idle and (idle[0].closed or now - idle[0].idle_since > IDLE_SECONDS):
                idle.popleft().close()
            if not idle:
                del self._idle[origin]

    # -- the connection limit: at most ``limit`` open; over it, close the oldest idle one
    # (any origin) or wait for one to be freed (within the attempt's connect timeout).

    def _slot_freed(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _evict_idle(self) -> None:
        """Close the oldest idle connection (of any origin) that is still open."""
        for idle in self._idle.values():
            while idle:
                conn = idle.popleft()
                if not conn.closed:
                    conn.close()  # frees its slot now (see _Connection._gone)
                    return

    async def _open_connection(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            conn = self._checkout(target.origin, time.monotonic())
            if conn is not None:
                return conn
            if self._open >= self._limit:
                self._evict_idle()
            if self._open < self._limit:
                break
            waiter = loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: pass the wake-up on
                raise
        self._open += 1
        try:
            conn = await self._connect(target)
        except BaseException:
            self._slot_freed()
            raise
        conn.on_gone = self._slot_freed
        return conn

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        self._busy.clear()
        self._dns.clear()

    # -- connecting ------------------------------------------------------------------------

    async def _addresses(self, host: str, port: int) -> list[tuple[int, str]]:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, host)]
        now = time.monotonic()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        found = list(dict.fromkeys((int(family), str(addr[0])) for family, *_, addr in infos))
        if len(self._dns) >= 1024:
            self._dns.clear()
        self._dns[(host, port)] = (now + DNS_TTL_SECONDS, found)
        return found

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        refused: str | None = None
        last_error: OSError | None = None
        for family, ip in await self._addresses(target.host, target.port):
            reason = check_address(ip, self.allow_cidrs)
            if reason is not None:
                refused = refused or reason
                continue
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, (ip, target.port))
                if target.tls:
                    context = self._ssl or _default_ssl_context()
                    _, conn = await loop.create_connection(
                        lambda: _Connection(target.origin),
                        sock=sock,
                        ssl=context,
                        server_hostname=target.host,
                    )
                else:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(target.origin), sock=sock
                    )
            except ssl.SSLCertVerificationError as exc:
                sock.close()
                raise ConnectionError(
                    f"TLS certificate verification failed for {target.host}: "
                    f"{exc.verify_message or exc}"
                ) from exc
            except ssl.SSLError as exc:
                sock.close()
                raise ConnectionError(f"TLS handshake with {target.host} failed: {exc}") from exc
            except OSError as exc:
                sock.close()
                last_error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return conn
        if last_error is not None:
            detail = last_error.strerror or str(last_error) or last_error.__class__.__name__
            raise ConnectionError(
                f"cannot connect to {target.host} port {target.port}: {detail}"
            ) from last_error
        if refused is not None:
            raise SsrfRefused(f"address {refused} ({_MARKER}; see ORDERCAST_WEBHOOK_ALLOW_CIDRS)")
        raise ConnectionError(f"{target.host} resolved to no address")

    # -- one request -----------------------------------------------------------------------

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000.0, 3)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        conn: _Connection | None = None
        try:
            target = self._target(url)
            request = target.head + _header_block(headers, len(body)) + body
            conn = self._checkout(target.origin, time.monotonic())
            if conn is None:
                async with asyncio.timeout_at(min(loop.time() + self.connect_timeout, deadline)):
                    conn = await self._open_connection(target)
            self._busy.add(conn)
            waiter = conn.waiter = loop.create_future()
            timer = loop.call_at(deadline, conn.on_timeout)
            try:
                assert conn.transport is not None
                conn.transport.write(request)
                await waiter
            finally:
                timer.cancel()
            text = b"".join(conn.body).decode("utf-8", errors="replace")
            result = SendResult(conn.status, None, None, conn.retry_after, text, elapsed())
        except TimeoutError:
            return SendResult(
                None,
                FailureKind.TIMEOUT,
                f"timeout after {self.timeout} s",
                None,
                None,
                elapsed(),
            )
        except SsrfRefused as exc:
            text = str(exc)
            return SendResult(
                None, FailureKind.SSRF_REFUSED, text[text.find("address ") :], None, None, elapsed()
            )
        except (OSError, ResponseError, ValueError) as exc:
            detail = str(exc) or exc.__class__.__name__
            return SendResult(
                None,
                FailureKind.CONNECTION,
                f"{exc.__class__.__name__}: {detail}"[:500],
                None,
                None,
                elapsed(),
            )
        finally:
            if conn is not None:
                self._busy.discard(conn)
                if conn.waiter is not None and conn.waiter.done() and conn.reusable:
                    self._checkin(conn, time.monotonic())
                else:
                    conn.close()  # failed, cut short, cancelled, or not keep-alive
        return result


_SSL_CONTEXT: ssl.SSLContext | None = None


def _default_ssl_context() -> ssl.SSLContext:
    """The system trust store, certificate and host name checks on (made once, lazily)."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT
