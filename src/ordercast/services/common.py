"""The system clock and ids shared by the services (ISO times: ``domain/isotime.py``)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from ulid import ULID


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def new_id(prefix: str = "") -> str:
    """``prefix`` + a lowercase ULID (time-ordered, 80 random bits)."""
    return prefix + str(ULID()).lower()


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
