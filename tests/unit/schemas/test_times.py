"""The one duration parser and the one time parser (schemas.times) that the command line, the SQL
library, the report's intervals and the workload's spikes and backlogs read with."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from schemas.errors import InputError
from schemas.times import DurationOutOfRange, Relative, parse_duration, parse_instant, parse_time

NOW = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)), ("10m", timedelta(minutes=10)), ("2h", timedelta(hours=2)),
    ("30d", timedelta(days=30)), ("1w", timedelta(weeks=1)), ("500ms", timedelta(milliseconds=500)),
    ("45", timedelta(seconds=45)), (" 1.5H ", timedelta(minutes=90)), ("36500d", timedelta(days=36_500)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "ten minutes", "-5m", "1e3s", "nan", "5 parsecs", "\u0661\u0662h", "5mm"])
def test_a_malformed_duration_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError, match="invalid duration"):
        parse_duration(text)


def test_a_duration_over_100_years_is_out_of_range() -> None:
    with pytest.raises(DurationOutOfRange, match="'36501d' is longer than 36,500 days"):
        parse_duration(" 36501d")


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW), ("NOW", NOW), ("24h", NOW - timedelta(hours=24)), ("90", NOW - timedelta(seconds=90)),
    ("today", datetime(2026, 11, 20, tzinfo=UTC)), ("yesterday", datetime(2026, 11, 19, tzinfo=UTC)),
    ("2026-11-16", datetime(2026, 11, 16, tzinfo=UTC)),
    ("2026-11-16T10:00:00z", datetime(2026, 11, 16, 10, tzinfo=UTC)),
    ("2026-11-16T10:00:00+02:00", datetime(2026, 11, 16, 8, tzinfo=UTC)),
])
def test_times_relative_as_ago(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW), ("+5m", NOW + timedelta(minutes=5)), ("-2h", NOW - timedelta(hours=2)),
    ("+ 30s", NOW + timedelta(seconds=30)), ("2026-11-16T10:00:00Z", datetime(2026, 11, 16, 10, tzinfo=UTC)),
])
def test_times_relative_as_signed(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW, "signed") == expected


@pytest.mark.parametrize(("text", "relative"), [
    ("-5m", "ago"), ("+5m", "ago"), ("last tuesday", "ago"), ("2026-13-45", "ago"),
    ("yesterday", "signed"), ("today", "signed"), ("2h", "signed"), ("soon", "signed"),
])
def test_each_form_accepts_only_its_relative_times(text: str, relative: Relative) -> None:
    with pytest.raises(InputError, match=re.escape(f"invalid time {text!r}")):
        parse_time(text, NOW, relative)


def test_a_relative_time_too_far_off_is_out_of_range() -> None:
    with pytest.raises(DurationOutOfRange):
        parse_time("1000000d", NOW)
    with pytest.raises(DurationOutOfRange):
        parse_time("+1000000000d", NOW, "signed")


def test_an_instant_is_aware_utc() -> None:
    assert parse_instant("2026-11-20T10:00:00.250Z") == datetime(2026, 11, 20, 10, 0, 0, 250_000, tzinfo=UTC)
    assert parse_instant("2026-11-20T10:00:00").tzinfo is UTC
    with pytest.raises(ValueError):
        parse_instant("soon")
