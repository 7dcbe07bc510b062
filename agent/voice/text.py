"""Words for the phone: sentence splitting for streaming TTS, backchannels, fixed prompts."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

# Ends a sentence: . ! ? (optionally closing quotes/brackets) then whitespace.
_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+")
# Not a sentence end: "St.", "Dr.", "a.m.", "p.m.", "e.g.", single initials, "No. 5".
_ABBREVIATION = re.compile(
    r"(?:\b(?:St|Dr|Mr|Mrs|Ms|Jr|Sr|No|vs|etc|approx)|\b[a-zA-Z]|\b(?:a\.m|p\.m|e\.g|i\.e))\.$"
)
MIN_SENTENCE = 12
MAX_CLAUSE = 180

FILLER = "One moment while I check that."
STILL_THERE = "Are you still there?"
GOODBYE_SILENT = "I'll let you go for now. Thanks for calling My Hibachi, goodbye!"
GOODBYE_TIME_LIMIT = (
    "I'm sorry, we've reached the time limit for this call. Please call back or text us anytime. Goodbye!"
)

TRANSFER_FAILED = "I'm sorry, I couldn't connect you just now. You can reach our team directly at {staff}."

BACKCHANNELS = frozenset(
    {
        "mhm", "mm", "mmhmm", "mm-hmm", "mmm", "hmm", "uh-huh", "uhhuh", "uh", "huh", "um",
        "yeah", "yep", "yup", "yes", "ok", "okay", "right", "sure", "alright", "cool", "got",
        "it", "i", "see", "gotcha", "aha", "ah", "oh", "nice", "great",
    }
)  # fmt: skip
# Short words that do mean "stop talking".
STOP_WORDS = frozenset({"stop", "wait", "hold", "hang", "sorry", "excuse", "actually", "no", "hello"})
# Words a finished request does not end on. While the caller's words end with one they are
# mid-sentence ("a table for", "what's open on the", "I'd like to um"): a draft answer to
# them would be thrown away when the next words come, its prompt tokens paid for.
DANGLING = frozenset(
    {
        "a", "an", "the", "and", "or", "but", "of", "on", "in", "at", "for", "to", "from",
        "with", "about", "by", "into", "my", "your", "our", "their", "um", "uh", "er", "erm",
    }
)  # fmt: skip
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
_TOKEN = re.compile(r"[a-z0-9]+(?:[-:.,][a-z0-9]+)*")


class SentenceSplitter:
    """Turns streamed text into whole sentences as soon as each one is complete."""

    def __init__(self) -> None:
        self._buffer = ""

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        sentences: list[str] = []
        start = 0
        for match in _BOUNDARY.finditer(self._buffer):
            candidate = self._buffer[start : match.end()].strip()
            head = self._buffer[start : match.start() + 1]
            if len(candidate) < MIN_SENTENCE or _ABBREVIATION.search(head):
                continue
            sentences.append(candidate)
            start = match.end()
        self._buffer = self._buffer[start:]
        if len(self._buffer) > MAX_CLAUSE:
            cut = self._buffer.rfind(", ", 0, MAX_CLAUSE)
            if cut > MIN_SENTENCE:
                sentences.append(self._buffer[: cut + 1].strip())
                self._buffer = self._buffer[cut + 2 :]
        return sentences

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("'", ""))


def word_key(text: str) -> tuple[str, ...]:
    """What a transcript says, for comparing an interim with its final: lower-case words and
    numbers ("6pm", "3", "4:30"), punctuation and case ignored. Digits count: "December"
    and "December 3" are different requests."""
    return tuple(_TOKEN.findall(text.lower().replace("'", "")))


def unfinished(said: tuple[str, ...]) -> bool:
    """Words (`word_key`) that stop mid-sentence: they end with an article, a preposition,
    a conjunction, a possessive or a hesitation."""
    return bool(said) and said[-1] in DANGLING


def is_backchannel(text: str) -> bool:
    """Listener noises ("mhm", "yeah okay", "uh huh") that must not interrupt the agent."""
    said = words(text)
    return bool(said) and all(word in BACKCHANNELS for word in said)


def wants_floor(text: str, *, seconds: float, min_words: int = 2, min_seconds: float = 0.4) -> bool:
    """Caller speech over the agent that is a real interruption, not a backchannel."""
    said = words(text)
    if not said or is_backchannel(text):
        return False
    return len(said) >= min_words or seconds >= min_seconds or said[0] in STOP_WORDS


def part_of_day(now: datetime, timezone: str) -> str:
    hour = now.astimezone(ZoneInfo(timezone)).hour
    if 4 <= hour < 12:
        return "morning"
    if 12 <= hour < 17:
        return "afternoon"
    return "evening"


def brand(location_name: str) -> str:
    """'My Hibachi Bay Area' -> 'My Hibachi in the Bay Area'; '... Sacramento' -> '... in Sacramento'."""
    prefix = "My Hibachi"
    if not location_name.startswith(prefix + " "):
        return location_name
    region = location_name[len(prefix) + 1 :]
    article = "the " if region.endswith(("Area", "Valley", "Coast")) else ""
    return f"{prefix} in {article}{region}"


def greeting(location_name: str, timezone: str, now: datetime, *, menu: bool = False) -> str:
    day = part_of_day(now, timezone)
    hello = f"Good {day}, thanks for calling {brand(location_name)}."
    return f"{hello} {MENU}" if menu else f"{hello} How can I help you today?"


# The optional key menu at the start of a call (`VoiceConfig.menu`); 0 reaches staff at any time.
MENU = (
    "Press 1 to book a party, 2 for prices and what's included, or 0 to talk to our team. "
    "Or just tell me what you need."
)
# What a menu key means, said the way a caller would say it (it becomes the caller's turn).
MENU_CHOICES = {
    "1": "I'd like to book a hibachi party.",
    "2": "How much does it cost, and what's included?",
}
