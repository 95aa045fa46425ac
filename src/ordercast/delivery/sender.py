"""The HTTP side of webhook delivery: one aiohttp session, an SSRF guard at connect time.

Every socket the session opens goes through :meth:`Sender._socket`, which sees the exact
address about to be dialled (after DNS, for IP literals too, for every address happy
eyeballs tries) and refuses it unless :func:`ordercast.protocols.netguard.check_address`
lets it through. So there is no check-then-connect gap for DNS rebinding to use, and
keep-alive connections only ever point at vetted addresses. Redirects are not followed,
proxies from the environment are ignored, the whole attempt has one timeout (15 s by
default) and at most the first 20 KB of the response body is read.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohappyeyeballs import AddrInfoType
from yarl import URL

from ordercast import __version__
from ordercast.protocols.netguard import Network, check_address
from ordercast.protocols.webhooks import FailureKind

RESPONSE_PREFIX_BYTES = 20_000
_MARKER = "refused by the SSRF guard"


class SsrfRefused(OSError):
    """A resolved address was refused by the SSRF guard (raised inside the connector)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    status: int | None
    failure: FailureKind | None
    error: str | None  # why there was no response, for the attempt log
    retry_after: str | None
    body: str | None  # the first 20 KB of the response, decoded leniently
    latency_ms: float


def _ssrf_reason(exc: BaseException) -> str | None:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, SsrfRefused):
            return str(cur)
        if _MARKER in str(cur):
            text = str(cur)
            start = text.find("address ")
            return text[start:] if start >= 0 else text
        stack.extend([cur.__cause__, cur.__context__, getattr(cur, "os_error", None)])
    return None


class Sender:
    def __init__(
        self,
        allow_cidrs: Sequence[Network] = (),
        *,
        timeout: float = 15.0,
        connect_timeout: float = 10.0,
        limit: int = 512,
    ) -> None:
        self.allow_cidrs = tuple(allow_cidrs)
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=min(connect_timeout, timeout))
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}  # parsed once per endpoint URL, not per request

    def _socket(self, addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, address = addr_info
        reason = check_address(str(address[0]), self.allow_cidrs)
        if reason is not None:
            raise SsrfRefused(f"address {reason} ({_MARKER}; see ORDERCAST_WEBHOOK_ALLOW_CIDRS)")
        return socket.socket(family=family, type=type_, proto=proto)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=0,
                ttl_dns_cache=10,
                socket_factory=self._socket,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                headers={"user-agent": f"ordercast-webhooks/{__version__}"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, url: str) -> URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= 4096:
                self._urls.clear()
            parsed = self._urls[url] = URL(url)
        return parsed

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        session = self._open()
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000.0, 3)

        try:
            async with session.post(
                self._url(url), data=body, headers=headers, allow_redirects=False
            ) as resp:
                chunks: list[bytes] = []
                size = 0
                while size < RESPONSE_PREFIX_BYTES:
                    chunk = await resp.content.read(RESPONSE_PREFIX_BYTES - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                text = b"".join(chunks).decode("utf-8", errors="replace")
                return SendResult(
                    resp.status, None, None, resp.headers.get("retry-after"), text, elapsed()
                )
        except TimeoutError:
            return SendResult(
                None,
                FailureKind.TIMEOUT,
                f"timeout after {self.timeout.total} s",
                None,
                None,
                elapsed(),
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            reason = _ssrf_reason(exc)
            if reason is not None:
                return SendResult(None, FailureKind.SSRF_REFUSED, reason, None, None, elapsed())
            detail = str(exc) or exc.__class__.__name__
            return SendResult(
                None,
                FailureKind.CONNECTION,
                f"{exc.__class__.__name__}: {detail}"[:500],
                None,
                None,
                elapsed(),
            )
