"""protocols/logins.py: failed-login limits per (address, credential), with a given clock."""

from __future__ import annotations

from ordercast.protocols.logins import LoginLimiter, basic_credential, bearer_credential


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
