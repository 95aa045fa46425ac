"""Clock, ids and time formatting shared by the services."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from ulid import ULID


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """UTC ISO 8601 with microseconds and a Z: fixed width, so it sorts as text."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    """Parse an ISO 8601 timestamp from a client; naive times are taken as UTC."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def new_id(prefix: str = "") -> str:
    return prefix + str(ULID()).lower()


def new_secret(prefix: str, nbytes: int = 24) -> str:
    return prefix + secrets.token_urlsafe(nbytes)
