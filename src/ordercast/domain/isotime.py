"""ISO 8601 times as ordercast writes and reads them (the one place; pure: no clock).

Written: UTC with microseconds and a ``Z`` (``2026-01-02T03:04:05.000006Z``): fixed
width, so stored times sort as text. Read: any ISO 8601 form Python parses, ``Z``
included; a time without a zone is taken as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
#: The instants ordercast accepts from clients (rendering them in any timezone stays
#: inside datetime's range).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)


def iso(dt: datetime) -> str:
    """``dt`` written in ordercast's form (a naive ``dt`` is taken as UTC)."""
    if dt.tzinfo is not UTC:
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    # isoformat is C and ~2x strftime (every change writes a time); the same text as
    # strftime(FORMAT) for the years ordercast accepts (1970-9998), "+00:00" -> "Z".
    return dt.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_iso(value: str) -> datetime:
    """An aware datetime (raises ``ValueError`` on a malformed value)."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def iso_from_unix(seconds: float) -> str:
    return iso(datetime.fromtimestamp(seconds, UTC))


def iso_plus(value: str, seconds: float) -> str:
    """``value`` plus ``seconds``, written in ordercast's form."""
    return iso(parse_iso(value) + timedelta(seconds=seconds))
