"""The system clock and ids shared by the services (ISO times: ``domain/isotime.py``)."""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# Crockford's base32 (ULID's alphabet), lowercase, two characters (10 bits) per entry.
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_SHIFTS = tuple(range(120, -10, -10))  # 13 pairs: the 130 bits of 26 characters
_RANDOM_BITS = 80


class _UlidClock:
    """What python-ulid's default generator does (``str(ULID()).lower()``, which this
    replaced): millisecond time in the top 48 bits, 80 random bits from ``os.urandom``,
    strictly monotonic within a process (an id made in the same millisecond as the last one
    is the last one's randomness + 1; ValueError when that overflows), in under half its
    CPU (several ids per order change: its event, each outbox message). Unlike python-ulid,
    the clock is read under the lock, so ids made one after another by different threads
    increase too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms = -1
        self._random = 0

    def value(self) -> int:
        with self._lock:  # the clock read inside: ids also increase across threads
            ms = time.time_ns() // 1_000_000
            if ms == self._ms:
                random = self._random + 1
                if random >> _RANDOM_BITS:
                    raise ValueError("Randomness within same millisecond exhausted")
            else:
                random = int.from_bytes(os.urandom(_RANDOM_BITS // 8), "big")
            self._ms, self._random = ms, random
        return ms << _RANDOM_BITS | random


_ULIDS = _UlidClock()


def new_id(prefix: str = "") -> str:
    """``prefix`` + a lowercase ULID (time-ordered, 80 random bits)."""
    value = _ULIDS.value()
    return prefix + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_secret(prefix: str, nbytes: int = 24) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


class SystemIds:
    """``ports.Ids``: ULIDs, ``secrets`` tokens and random uuids."""

    new_id = staticmethod(new_id)
    new_secret = staticmethod(new_secret)

    @staticmethod
    def uuid4() -> str:
        return str(uuid.uuid4())


SYSTEM_IDS = SystemIds()
