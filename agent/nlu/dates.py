"""Dates: find where a day is mentioned, then let `dateparser` read it.

The patterns only locate candidate spans ("next saturday", "dec 5th", "12/5", "the
14th", "tomorrow"); `dateparser` (future-preferring, relative to the customer's local
now) turns a span into a date. Weekends are a small rule of our own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import dateparser

WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|fri|sat|sun)"
MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t|tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
DAY = r"\d{1,2}(?:st|nd|rd|th)?"

# Most specific first; the first pattern that yields a date wins.
PATTERNS = (
    re.compile(rf"\b{MONTH}\.?\s+{DAY}(?:,?\s+\d{{4}})?\b"),
    re.compile(rf"\b{DAY}\s+(?:of\s+)?{MONTH}(?:,?\s+\d{{4}})?\b"),
    re.compile(r"\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b"),
    re.compile(r"\b(?:day after tomorrow|tomorrow|today|tonight)\b"),
    re.compile(r"\bin\s+\d{1,2}\s+(?:days?|weeks?)\b"),
    re.compile(rf"\b(?:next\s+)?{WEEKDAY}\b"),
)
NTH = re.compile(r"\bthe\s+(\d{1,2})(?:st|nd|rd|th)\b")
WEEKEND = re.compile(r"\b(?:(this|next|coming)\s+)?weekend\b")
# "sun" and "sat" only count next to a date word, since they are ordinary words too.
SHORT_DAY = re.compile(r"\b(sun|sat)\b")
DATE_CONTEXT = re.compile(r"\b(?:on|this|next|coming|for|free|open|available|at|book)\s+(?:sun|sat)\b")

SETTINGS_BASE = {"PREFER_DATES_FROM": "future", "DATE_ORDER": "MDY", "RETURN_AS_TIMEZONE_AWARE": False}


@dataclass(slots=True, frozen=True)
class DateMention:
    """A day the customer named; a weekend is its Saturday with `days=2`."""

    day: date
    said: str
    days: int = 1


def _parse(span: str, local_now: datetime) -> date | None:
    settings = {**SETTINGS_BASE, "RELATIVE_BASE": local_now.replace(tzinfo=None)}
    parsed = dateparser.parse(span, languages=["en"], settings=settings)
    return parsed.date() if parsed else None


def _nth_of_month(day_number: int, today: date, local_now: datetime) -> date | None:
    """'the 14th': that day of this month, or of the next month once it has passed."""
    for months_ahead in range(3):
        month = (today.month - 1 + months_ahead) % 12 + 1
        year = today.year + (today.month - 1 + months_ahead) // 12
        found = _parse(f"{date(year, month, 1):%B} {day_number} {year}", local_now)
        if found and found >= today:
            return found
    return None


def _weekend(which: str | None, today: date) -> date:
    saturday = today + timedelta(days=(5 - today.weekday()) % 7)
    if today.weekday() == 6:  # on a Sunday "this weekend" is over: the coming one
        saturday = today + timedelta(days=6)
    return saturday + timedelta(days=7) if which == "next" else saturday


def find_date(text: str, local_now: datetime, *, expecting: bool = False) -> DateMention | None:
    """The first day mentioned in normalised `text`, read relative to `local_now` (customer's zone).

    `expecting` says a day was just asked for, so a bare "sat" is a day, not a word.
    """
    today = local_now.date()
    weekend = WEEKEND.search(text)
    if weekend:
        return DateMention(_weekend(weekend.group(1), today), weekend.group(0), days=2)
    for pattern in PATTERNS:
        for match in pattern.finditer(text):
            span = match.group(0)
            if SHORT_DAY.fullmatch(span.removeprefix("next ")) and not (
                expecting or DATE_CONTEXT.search(text)
            ):
                continue
            found = _parse(span.replace("tonight", "today"), local_now)
            if found:
                return DateMention(found, span)
    nth = NTH.search(text)
    if nth and 1 <= int(nth.group(1)) <= 31:
        found = _nth_of_month(int(nth.group(1)), today, local_now)
        if found:
            return DateMention(found, nth.group(0))
    return None
