"""The one ISO 8601 module: the form ordercast writes, and what it reads."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ordercast.domain.isotime import (
    EARLIEST,
    FORMAT,
    LATEST,
    iso,
    iso_from_unix,
    iso_plus,
    parse_iso,
)


def test_written_form_is_fixed_width_utc_with_microseconds() -> None:
    paris = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 1, 2, 4, 4, 5, 6, tzinfo=paris)) == "2026-01-02T03:04:05.000006Z"
    assert iso(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000000Z"  # naive: UTC
    assert iso_from_unix(0.5) == "1970-01-01T00:00:00.500000Z"


def test_read_forms_and_arithmetic() -> None:
    assert parse_iso("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_iso("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_iso("2026-01-02T04:04:05+01:00") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert iso_plus("2026-01-02T23:59:59.500000Z", 0.75) == "2026-01-03T00:00:00.250000Z"
    with pytest.raises(ValueError):
        parse_iso("yesterday")


def test_written_form_matches_the_strftime_format_across_the_accepted_range() -> None:
    # iso() writes with isoformat for speed; FORMAT is the documented form it must equal.
    rng = random.Random(7)
    span = int((LATEST - EARLIEST).total_seconds() * 1_000_000)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
    for _ in range(2_000):
        at = EARLIEST + timedelta(microseconds=rng.randrange(span))
        for dt in (at.astimezone(rng.choice(zones)), at.replace(tzinfo=None)):
            assert iso(dt) == at.strftime(FORMAT)
    assert iso(EARLIEST) == "1970-01-01T00:00:00.000000Z"
    assert iso(LATEST) == "9998-12-31T23:59:59.000000Z"
