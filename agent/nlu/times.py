"""Start times: "6 pm", "at 6", "18:00", "noon", "lunch", "evening" -> one of our slots.

Events start only at 12:00, 15:00 or 18:00; a time within an hour of a slot is taken
as that slot ("5:30 pm" -> 18:00), anything else is reported as unsupported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SLOTS = ("12:00", "15:00", "18:00")
WORDS = {
    "noon": "12:00",
    "midday": "12:00",
    "lunch": "12:00",
    "lunchtime": "12:00",
    "afternoon": "15:00",
    "evening": "18:00",
    "dinner": "18:00",
    "dinnertime": "18:00",
    "night": "18:00",
    "tonight": "18:00",
}
CLOCK = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(a\.?m\.?|p\.?m\.?)(?![a-z])")
COLON = re.compile(r"\b(\d{1,2}):(\d{2})\b")
AT = re.compile(
    r"(?:\bat|@|\baround|\babout)\s*(\d{1,2})(?:\s*o'?clock)?\b"
    r"(?!\s*(?:/|st\b|nd\b|rd\b|th\b|people|guests|adults|kids|children|persons|of us))"
)
OCLOCK = re.compile(r"\b(\d{1,2})\s*o'?clock\b")
BARE = re.compile(r"^\s*(\d{1,2})\s*(?:pm|p)?\s*[.!]?\s*$")
WORD = re.compile(r"\b(" + "|".join(WORDS) + r")\b")


@dataclass(slots=True, frozen=True)
class TimeMention:
    """A time the customer said: `slot` is our start time for it, or None if we have none near."""

    slot: str | None
    hour: int


def slot_for_hour(hour: int, minute: int = 0) -> str | None:
    minutes = hour * 60 + minute
    best = min(SLOTS, key=lambda slot: abs(int(slot[:2]) * 60 - minutes))
    return best if abs(int(best[:2]) * 60 - minutes) <= 60 else None


def _hour(raw_hour: str, meridiem: str | None) -> int:
    """24-hour clock; without am/pm, 1-9 are afternoon/evening (nobody books hibachi at 6 am)."""
    hour = int(raw_hour)
    if meridiem:
        if meridiem.startswith("p") and hour < 12:
            return hour + 12
        if meridiem.startswith("a") and hour == 12:
            return 0
        return hour
    return hour + 12 if 1 <= hour <= 9 else hour


def find_time(text: str, *, expecting: bool = False) -> TimeMention | None:
    """The start time mentioned in normalised `text`; a bare "6" counts only when `expecting`."""
    for pattern in (CLOCK, COLON, OCLOCK, AT):
        match = pattern.search(text)
        if match:
            groups = match.groups()
            meridiem = groups[2] if len(groups) > 2 else None
            minute = int(groups[1]) if len(groups) > 1 and groups[1] else 0
            hour = _hour(groups[0], meridiem)
            if hour > 23:
                continue
            return TimeMention(slot_for_hour(hour, minute), hour)
    word = WORD.search(text)
    if word:
        slot = WORDS[word.group(1)]
        return TimeMention(slot, int(slot[:2]))
    bare = BARE.match(text) if expecting else None
    if bare:
        hour = _hour(bare.group(1), "pm")
        return TimeMention(slot_for_hour(hour), hour) if hour <= 23 else None
    return None
