"""protocols/logins.py: failed-login limits per (address, credential), with a given clock."""

from __future__ import annotations

from ordercast.protocols.logins import (
    LoginLimiter,
    basic_credential,
    bearer_credential,
    forwarded_client,
)
from ordercast.protocols.netguard import parse_allow_cidrs


def test_blocks_the_pair_only_and_expires() -> None:
    limiter = LoginLimiter(max_failures=3, window=60.0)
    key = basic_credential("ock_a")
    for t in (0.0, 1.0, 2.0):
        assert limiter.retry_after("10.0.0.1", key, t) is None
        limiter.failed("10.0.0.1", key, t)
    assert limiter.retry_after("10.0.0.1", key, 3.0) == 57  # until the first leaves
    assert limiter.retry_after("10.0.0.1", basic_credential("ock_b"), 3.0) is None
    assert limiter.retry_after("10.0.0.2", key, 3.0) is None
    assert limiter.retry_after("10.0.0.1", key, 60.0) is None  # the first one left


def test_credentials() -> None:
    assert basic_credential("k") != basic_credential("k2")
    # A user token's claims are its credential (any signature); other bearers: the admin.
    assert bearer_credential("oct_abc.sig1") == bearer_credential("oct_abc.sig2")
    assert bearer_credential("oct_abc.sig1") != bearer_credential("oct_abd.sig1")
    assert bearer_credential("guess-1") == bearer_credential("guess-2")
    assert bearer_credential("\ud800") == bearer_credential("x")  # never raises
    assert basic_credential("\ud800\x00")


def test_memory_is_bounded() -> None:
    limiter = LoginLimiter(max_failures=2, window=60.0, max_entries=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", "key:x", 0.0)
    assert len(limiter) <= 100


def test_forwarded_client_believes_only_what_trusted_proxies_appended() -> None:
    local = parse_allow_cidrs("127.0.0.1,::1")
    lb = parse_allow_cidrs("10.0.0.0/8")
    # No proxy trusted, or a peer that is not one: the peer, whatever the header says.
    assert forwarded_client("203.0.113.7", "198.51.100.1", local) == "203.0.113.7"
    assert forwarded_client("127.0.0.1", "198.51.100.1", ()) == "127.0.0.1"
    # A trusted peer without the header: itself.
    assert forwarded_client("127.0.0.1", None, local) == "127.0.0.1"
    # nginx on this host: the address it heard from.
    assert forwarded_client("127.0.0.1", "198.51.100.1", local) == "198.51.100.1"
    # A client that forges the left of the header gains nothing: the rightmost untrusted.
    assert forwarded_client("127.0.0.1", "1.2.3.4, 198.51.100.1", local) == "198.51.100.1"
    # Two trusted hops (a balancer in 10/8 behind nginx here): both skipped.
    both = local + lb
    assert forwarded_client("127.0.0.1", "198.51.100.1, 10.1.2.3", both) == "198.51.100.1"
    # Garbage ends the walk at the last address a trusted proxy vouched for.
    assert forwarded_client("127.0.0.1", "junk, 10.1.2.3", both) == "10.1.2.3"
    assert forwarded_client("127.0.0.1", "nonsense", local) == "127.0.0.1"
    # Only trusted hops: the leftmost of them.
    assert forwarded_client("127.0.0.1", "10.1.2.3", both) == "10.1.2.3"
    # IPv6, normalised.
    assert forwarded_client("::1", "2001:DB8::1", local) == "2001:db8::1"
    assert forwarded_client("not-an-ip", "198.51.100.1", local) == "not-an-ip"
