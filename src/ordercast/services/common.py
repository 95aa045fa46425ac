"""The system clock and ids shared by the services (ISO times: ``domain/isotime.py``)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from ulid import ULID


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def new_id(prefix: str = "") -> str:
    return prefix + str(ULID()).lower()


def new_secret(prefix: str, nbytes: int = 24) -> str:
    return prefix + secrets.token_urlsafe(nbytes)
