"""How the deterministic brain says things: dates, times, parties, money, short answers."""

from __future__ import annotations

import re
from datetime import date

from agent.nlu.text import tokens

STOPWORDS = frozenset(
    "a an the and or but if of to in on at for with is are was be do does can could i you we my your "
    "our it this that what how when where who which will would should there any me us".split()
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$\"'(])")
_MARKUP = re.compile(r"^\s*(?:#+|[-*•]|\d+\.)\s*|\*\*|__|`", re.MULTILINE)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def say_day(day: date | str) -> str:
    """'Saturday, December 5th'."""
    value = date.fromisoformat(day) if isinstance(day, str) else day
    return f"{value:%A}, {value:%B} {ordinal(value.day)}"


def say_time(slot: str) -> str:
    """'18:00' -> '6 pm'."""
    hour, minute = (int(part) for part in slot.split(":")[:2])
    shown = hour % 12 or 12
    suffix = "am" if hour < 12 else "pm"
    return f"{shown}:{minute:02d} {suffix}" if minute else f"{shown} {suffix}"


def say_money(dollars: float) -> str:
    """'$1,100', '$1,201.75'."""
    return f"${dollars:,.0f}" if float(dollars).is_integer() else f"${dollars:,.2f}"


def join_and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def say_party(adults: int, children: int = 0, toddlers: int = 0) -> str:
    parts = [plural(adults, "adult")]
    if children:
        parts.append(plural(children, "kid"))
    if toddlers:
        parts.append(plural(toddlers, "little one") + " under 3")
    return join_and(parts)


def sentences(text: str) -> list[str]:
    """`text` split into sentences, markup and extra spaces removed."""
    clean = " ".join(_MARKUP.sub("", text).split())
    return [part.strip() for part in _SENTENCE_END.split(clean) if part.strip()]


def best_sentences(passage: str, question: str, limit: int = 2, max_chars: int = 300) -> str:
    """The one or two sentences of `passage` that share most words with `question`, in order."""
    parts = sentences(passage)
    if not parts:
        return ""
    # Plurals match singulars both ways ("rains" asks about "rain").
    asked = {word.rstrip("s") for word in tokens(question.lower()) if word not in STOPWORDS}

    def overlap(sentence: str) -> int:
        return len(asked & {word.rstrip("s") for word in tokens(sentence.lower())})

    def fits(index: int) -> bool:
        return sum(len(parts[i]) for i in chosen) + len(parts[index]) <= max_chars

    ranked = sorted(range(len(parts)), key=lambda i: (-overlap(parts[i]), i))
    chosen: list[int] = []
    for index in ranked[:limit]:
        if chosen and (overlap(parts[index]) == 0 or not fits(index)):
            break
        chosen.append(index)
    following = chosen[0] + 1
    if len(chosen) < limit and following < len(parts) and fits(following):
        # Nothing else matched: the sentence after the best one completes it ("No." alone answers nothing).
        chosen.append(following)
    answer = " ".join(parts[i] for i in sorted(chosen))
    return answer if len(answer) <= max_chars else answer[: max_chars - 1].rsplit(" ", 1)[0] + "…"
