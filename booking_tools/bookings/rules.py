"""Slot and calendar rules (pure functions; time is always passed in)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SLOT_TIMES = (time(12, 0), time(15, 0), time(18, 0))
EVENT_LENGTH = timedelta(hours=2)
LEAD_TIME = timedelta(hours=48)
HORIZON_DAYS = 180


def event_start(tz: str, event_date: date, start_time: time) -> datetime:
    return datetime.combine(event_date, start_time, tzinfo=ZoneInfo(tz))


def local_today(tz: str, now: datetime) -> date:
    return now.astimezone(ZoneInfo(tz)).date()


def slot_problem(tz: str, event_date: date, start_time: time, *, now: datetime) -> str | None:
    """Why this slot can't be booked at `now`, or None when it can."""
    if start_time not in SLOT_TIMES:
        return "events start at 12:00, 15:00 or 18:00"
    start = event_start(tz, event_date, start_time)
    if start - now < LEAD_TIME:
        return "bookings need at least 48 hours' notice"
    if event_date > local_today(tz, now) + timedelta(days=HORIZON_DAYS):
        return f"we take bookings at most {HORIZON_DAYS} days ahead"
    return None


def hours_until(tz: str, event_date: date, start_time: time, *, now: datetime) -> float:
    return (event_start(tz, event_date, start_time) - now).total_seconds() / 3600


def within_48h(tz: str, event_date: date, start_time: time, *, now: datetime) -> bool:
    return event_start(tz, event_date, start_time) - now <= LEAD_TIME
