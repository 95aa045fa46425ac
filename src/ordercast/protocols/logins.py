"""Failed-login limits, per (client address, credential) — never per address alone.

Sans-I/O: the caller passes the time. A *credential* is what a login attempt claims to
be: an app key (HTTP Basic, the Pusher auth endpoints' ``key``, a STOMP ``login`` with a
passcode, an OAuth2 client), an account's username (the OAuth2 password grant), or a bearer
token's claim (the signed body of a user access token; any other
bearer value is a guess at the admin token, one credential). So a device that keeps
failing with one app's key from a restaurant's NAT address blocks that key from that
address only; the other apps (and users) behind the same address keep working.

Past ``max_failures`` failures within ``window`` seconds, further attempts for that pair
are refused without checking credentials (the edges answer 429 with ``Retry-After``, or a
STOMP ERROR) until the oldest failure leaves the window.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Final

from ordercast.protocols.credentials import as_bytes
from ordercast.protocols.netguard import Network

USER_TOKEN_PREFIX: Final = "oct_"


def basic_credential(key: str) -> str:
    """The credential of an app key (whatever the secret tried with it)."""
    return _digest("key", key)


def bearer_credential(token: str) -> str:
    """The credential of a bearer token: a token's claims (a legacy ``oct_`` token's body,
    a JWT's payload), else "the admin token"."""
    if token.startswith(USER_TOKEN_PREFIX):
        return _digest("user", token.partition(".")[0])
    if token.count(".") == 2:  # a JWT: header.payload.signature
        return _digest("jwt", token.split(".")[1])
    return _digest("admin", "")


def account_credential(tenant_id: str, username: str) -> str:
    """The credential of a password login (the OAuth2 password grant): the account named,
    whatever password was tried with it."""
    return _digest("account", tenant_id + "\x00" + username)


def _digest(kind: str, value: str) -> str:
    return kind + ":" + hashlib.sha256(as_bytes(value)).hexdigest()[:32]


def forwarded_client(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address for the login limits. ``peer`` itself, unless it is a trusted
    proxy (``ORDERCAST_TRUSTED_PROXIES``) that sent ``X-Forwarded-For``: then that header is
    read from the right (each proxy appends the address it heard from), trusted proxies
    skipped, and the first other address is the client's. A malformed entry ends the walk at
    the last address a trusted proxy vouched for. A client can put anything at the left of the
    header; only what trusted proxies appended is believed."""
    if not forwarded_for or not trusted or not _within(_ip(peer), trusted):
        return peer
    address = peer
    for hop in reversed(forwarded_for.split(",")):
        ip = _ip(hop.strip())
        if ip is None:
            return address
        address = str(ip)
        if not _within(ip, trusted):
            return address
    return address


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: Sequence[Network]
) -> bool:
    return ip is not None and any(ip in net for net in networks)


class LoginLimiter:
    def __init__(self, max_failures: int, window: float, max_entries: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_entries = max_entries
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, address: str, credential: str, now: float) -> int | None:
        """Seconds to wait if this (address, credential) is blocked now, else None."""
        key = (address, credential)
        failures = self._failures.get(key)
        if not failures:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        if len(failures) < self.max_failures:
            return None
        return max(1, math.ceil(failures[0] + self.window - now))

    def failed(self, address: str, credential: str, now: float) -> None:
        key = (address, credential)
        failures = self._failures.get(key)
        if failures is None:
            failures = self._failures[key] = deque()
            if len(self._failures) > self.max_entries:  # bound memory under a spray
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        failures.append(now)
        while len(failures) > self.max_failures:
            failures.popleft()
