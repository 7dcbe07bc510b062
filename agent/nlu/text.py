"""Text normalisation shared by the extractors: case, typos, spelled-out numbers."""

from __future__ import annotations

import re
from collections.abc import Iterable

from rapidfuzz import fuzz, process
from text_to_num import alpha2digit

# Abbreviations and texting shorthand, token -> replacement.
SHORTHAND = {
    "tmrw": "tomorrow",
    "tmr": "tomorrow",
    "tmrow": "tomorrow",
    "2morrow": "tomorrow",
    "tomorow": "tomorrow",
    "tommorow": "tomorrow",
    "tommorrow": "tomorrow",
    "thurs": "thursday",
    "thur": "thursday",
    "thu": "thursday",
    "weds": "wednesday",
    "wed": "wednesday",
    "tues": "tuesday",
    "tue": "tuesday",
    "ppl": "people",
    "pls": "please",
    "plz": "please",
    "thx": "thanks",
    "ty": "thanks",
    "u": "you",
    "r": "are",
    "ur": "your",
    "im": "i'm",
    "yea": "yeah",
    "yah": "yeah",
    "ya": "yeah",
    "k": "ok",
    "kk": "ok",
    "okey": "okay",
    "resched": "reschedule",
    "rez": "reservation",
    "cancle": "cancel",
    "cancell": "cancel",
    "bookin": "booking",
    "res": "reservation",
}

# Words worth correcting when misspelt (long enough that a fuzzy match is safe).
VOCABULARY = (
    "monday tuesday wednesday thursday friday saturday sunday "
    "january february march april june july august september october november december "
    "tomorrow weekend available availability reschedule reservation booking booked cancel "
    "deposit payment waitlist loyalty rewards points manager person human representative "
    "adults children toddlers people guests party lobster filet allergy allergies gluten "
    "vegetarian gratuity propane sacramento quote price schedule appointment"
).split()
FUZZY_CUTOFF = 82

_WORD = re.compile(r"[a-z0-9']+")
_DOZEN = re.compile(r"\b(?:(a|one)|(\d+)|half a)\s+dozen\b")


def correct_token(token: str) -> str:
    """The token, with shorthand expanded and a near-miss of a key word corrected."""
    if token in SHORTHAND:
        return SHORTHAND[token]
    if len(token) < 5 or token in VOCABULARY or not token.isalpha():
        return token
    match = process.extractOne(token, VOCABULARY, scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF)
    return match[0] if match else token


def _dozens(match: re.Match[str]) -> str:
    if match.group(1):
        return "12"
    if match.group(2):
        return str(int(match.group(2)) * 12)
    return "6"


def normalize(text: str) -> str:
    """Lower case, shorthand and typos fixed, numbers in digits ("twenty adults" -> "20 adults")."""
    lowered = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    fixed = _WORD.sub(lambda m: correct_token(m.group(0)), lowered)
    digits = alpha2digit(fixed, "en", threshold=0)
    return _DOZEN.sub(_dozens, digits)


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text)


def has_phrase(text: str, phrases: Iterable[str]) -> bool:
    """Whether any phrase occurs in normalised `text` as whole words."""
    padded = f" {' '.join(tokens(text))} "
    return any(f" {phrase} " in padded for phrase in phrases)
