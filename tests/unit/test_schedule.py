"""The cron parser behind `parcours schedule`: next fire times and clear errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from parcours.jobs.cron import CronError, parse_cron


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 3 * * *", "2025-03-10T02:59:30", "2025-03-10T03:00"),
        ("0 3 * * *", "2025-03-10T03:00:00", "2025-03-11T03:00"),  # strictly after
        ("*/15 * * * *", "2025-03-10T10:07", "2025-03-10T10:15"),
        ("30 8-10/2 * * *", "2025-03-10T09:00", "2025-03-10T10:30"),
        ("0 0 1 * *", "2025-12-15T00:00", "2026-01-01T00:00"),
        ("0 6 * * mon", "2025-03-12T00:00", "2025-03-17T06:00"),  # Wednesday → next Monday
        ("0 6 * * 0", "2025-03-12T00:00", "2025-03-16T06:00"),  # Sunday as 0 …
        ("0 6 * * 7", "2025-03-12T00:00", "2025-03-16T06:00"),  # … and as 7
        ("0 0 13 * fri", "2025-03-12T00:00", "2025-03-13T00:00"),  # day OR weekday when both restricted
        ("0 0 13 * fri", "2025-03-13T01:00", "2025-03-14T00:00"),
        ("0 0 29 feb *", "2025-01-01T00:00", "2028-02-29T00:00"),
        ("5,10 1 * jan-mar *", "2025-04-01T00:00", "2026-01-01T01:05"),
    ],
)
def test_next_fire_time(expression: str, after: str, expected: str) -> None:
    assert parse_cron(expression).next_after(_t(after)) == _t(expected)


def test_naive_datetimes_are_utc() -> None:
    assert parse_cron("0 3 * * *").next_after(datetime(2025, 1, 1, 1, 0)) == _t("2025-01-01T03:00")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 3 * *", "expected 5 fields"),
        ("60 3 * * *", "minute: 60 is outside 0-59"),
        ("0 24 * * *", "hour: 24 is outside 0-23"),
        ("0 3 * * funday", "day of week"),
        ("*/0 * * * *", "step"),
        ("0 5-2 * * *", "runs backwards"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(expression)
