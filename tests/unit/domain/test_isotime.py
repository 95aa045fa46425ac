"""The one ISO 8601 module: the form ordercast writes, and what it reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ordercast.domain.isotime import iso, iso_from_unix, iso_plus, parse_iso


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
