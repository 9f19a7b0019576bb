"""A small five-field cron expression parser (minute hour day-of-month month day-of-week), in UTC.

Enough for scheduling a nightly retrain without a scheduler dependency: numbers, `*`, ranges `a-b`, steps
`*/n` and `a-b/n`, lists `a,b`, and three-letter month/day names. Like Vixie cron, when both day-of-month
and day-of-week are restricted a day matches if EITHER does; day-of-week 0 and 7 are both Sunday.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {name: i for i, name in enumerate(_DAYS)}),
)
_HORIZON_DAYS = 366 * 5  # e.g. "0 0 29 2 *" fires within 4 years; anything else never fires


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message names the field and the rule."""


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise CronError(f"cron {name}: {text!r} is not a number{' or a name' if names else ''}")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"cron {name}: {value} is outside {low}-{high}")
    return value


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"cron {name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, name, low, high, names), _value(last, name, low, high, names)
            if start > end:
                raise CronError(f"cron {name}: range {base!r} runs backwards")
        else:
            start = _value(base, name, low, high, names)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday … 6 = Saturday
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, day: datetime) -> bool:
        weekday = (day.weekday() + 1) % 7  # Python: Monday = 0; cron: Sunday = 0
        in_days, in_weekdays = day.day in self.days, weekday in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (naive datetimes are taken as UTC)."""
        start = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        start = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(_HORIZON_DAYS):
            if day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise CronError(f"cron {self.expression!r} never fires")


def parse_cron(expression: str) -> CronSchedule:
    """Parse `minute hour day-of-month month day-of-week`; raises CronError naming the bad field."""
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(f"cron {expression!r}: expected 5 fields (minute hour day month weekday), got {len(parts)}")
    parsed = [_field(text, *spec) for text, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in parsed[4])
    schedule = CronSchedule(
        expression, parsed[0], parsed[1], parsed[2], parsed[3], weekdays, parts[2] != "*", parts[4] != "*"
    )
    schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # "0 0 31 2 *" is valid syntax but never fires
    return schedule
