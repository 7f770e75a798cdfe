"""When a subscription's digest goes out: cadence, local time, weekday and time zone, validated."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digestbot.errors import UsageError

CADENCES = ("instant", "daily", "weekly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
_DAY_NAMES = {name: day for day in WEEKDAYS for name in (day, {
    "mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday", "fri": "friday",
    "sat": "saturday", "sun": "sunday"}[day])}


@dataclass(frozen=True, slots=True)
class Schedule:
    cadence: str = "daily"
    at: str = "08:00"  # HH:MM in the subscriber's time zone
    day: str = "mon"  # for weekly digests
    tz: str = "UTC"


def parse_schedule(cadence: str = "daily", at: str = "08:00", day: str = "mon", tz: str = "UTC") -> Schedule:
    """A checked Schedule; raises UsageError naming the bad value and what is allowed."""
    cadence = cadence.strip().lower()
    if cadence not in CADENCES:
        raise UsageError(f"bad cadence {cadence!r}: use one of {', '.join(CADENCES)}")
    match = _TIME.fullmatch(at.strip())
    if not match:
        raise UsageError(f"bad time {at!r}: use HH:MM, 24-hour, e.g. 08:00")
    written = day
    day = _DAY_NAMES.get(day.strip().lower(), "")
    if not day:
        raise UsageError(f"bad day {written!r}: use one of {', '.join(WEEKDAYS)}")
    tz = tz.strip()
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {tz!r}: use an IANA name such as Europe/Berlin") from None
    return Schedule(cadence, f"{int(match[1]):02d}:{match[2]}", day, tz)


def _slots_from(schedule: Schedule, day, step: timedelta, direction: int):
    """Scheduled instants (UTC) on ``day`` and every ``step`` after (or before) it."""
    zone = ZoneInfo(schedule.tz)
    hour, minute = map(int, schedule.at.split(":"))
    while True:
        yield datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)
        day += direction * step


def _anchor(schedule: Schedule, now: datetime):
    """The subscriber's local date of ``now``, moved back to the schedule's weekday if weekly."""
    day = now.astimezone(ZoneInfo(schedule.tz)).date()
    if schedule.cadence == "weekly":
        day -= timedelta(days=(day.weekday() - WEEKDAYS.index(schedule.day)) % 7)
    return day, timedelta(days=7 if schedule.cadence == "weekly" else 1)


def next_slot(schedule: Schedule, now: datetime) -> datetime:
    """The first scheduled time strictly after ``now`` (UTC)."""
    day, step = _anchor(schedule, now)
    return next(slot for slot in _slots_from(schedule, day, step, +1) if slot > now)


def latest_slot(schedule: Schedule, now: datetime) -> datetime:
    """The most recent time at or before ``now`` when this schedule's digest was due (UTC).

    Local wall-clock times are resolved in the subscriber's zone with zoneinfo, so 08:00
    stays 08:00 across daylight-saving changes. A time skipped by a spring-forward gap
    resolves as zoneinfo resolves it (to the instant an hour later on the wall clock).
    """
    day, step = _anchor(schedule, now)
    return next(slot for slot in _slots_from(schedule, day, step, -1) if slot <= now)


# An instant subscription has no clock: it is due when matches may be waiting for it (it was
# made or changed, or its query matched new papers). This instant in the past says "look now".
CHECK_NOW = datetime(2000, 1, 1, tzinfo=UTC)


def next_due(schedule: Schedule, covered: datetime, *, active: bool = True) -> datetime | None:
    """When a subscription's next digest is due (UTC): the first slot after ``covered`` (the
    latest slot already covered, or its creation), ``CHECK_NOW`` for an instant one, None when
    it is not active. Due at ``now`` exactly when ``latest_slot(now) > covered``."""
    if not active:
        return None
    if schedule.cadence == "instant":
        return CHECK_NOW
    return next_slot(schedule, covered)
