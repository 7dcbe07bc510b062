"""Small entities: names, booking codes, yes/no, service regions, card and phone numbers."""

from __future__ import annotations

import enum
import re

from rapidfuzz import fuzz, process

from agent.nlu.text import has_phrase, tokens

CODE = re.compile(r"\b(MH[A-HJ-NP-Z2-9]{6})\b", re.IGNORECASE)
# What replaces a card number in stored messages (see `agent.tools.common.redact_cards`).
CARD_REMOVED = "[card number removed]"
# A card-like run of 13-19 digits, spaces or dashes allowed between them.
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
PHONE = re.compile(r"(?<!\d)(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}(?!\d)")

NAME_LEADS = (
    "my name is",
    "my name's",
    "name is",
    "name's",
    "the name is",
    "it's under the name",
    "its under the name",
    "under the name of",
    "under the name",
    "put it under",
    "it's under",
    "its under",
    "booked under",
    "this is",
    "call me",
    "i am",
    "i'm",
    "im",
)
# Leads that are ordinary English too: the name after them must be capitalised.
WEAK_LEADS = frozenset({"this is", "i am", "i'm", "im", "it's under", "its under"})
NAME_WORD = r"[A-Za-z][A-Za-z'\-]*"
NAME_AFTER = re.compile(rf"\s+({NAME_WORD}(?:\s+{NAME_WORD}){{0,2}})")
NOT_NAMES = frozenset(
    (
        "a an the and or but so just not no yes yeah ok okay sure here there back calling texting "
        "looking trying wondering interested ready good fine great happy sorry owner manager admin "
        "staff boss chef customer client going gonna planning hoping thinking about with from for to "
        "in on at of my your our it this that hibachi booking party event available free open also "
        "very really still done new hungry asking wanting booked reservation by is are was want need "
        "would like please thanks thank hi hello hey i me we you they he she them us"
    ).split()
)

YES = (
    "yes",
    "yeah",
    "yep",
    "yup",
    "sure",
    "ok",
    "okay",
    "correct",
    "right",
    "confirm",
    "confirmed",
    "absolutely",
    "definitely",
    "of course",
    "y",
    "go ahead",
    "do it",
    "book it",
    "sounds good",
    "that works",
    "works for me",
    "perfect",
    "great",
    "let's do it",
    "please do",
    "yes please",
    "affirmative",
    "that's right",
    "sure thing",
)
NO = (
    "no",
    "nope",
    "nah",
    "n",
    "not really",
    "don't",
    "do not",
    "never mind",
    "nevermind",
    "not now",
    "wait",
    "hold on",
    "no thanks",
    "not yet",
    "negative",
    "cancel that",
    "forget it",
)

REGIONS = {
    "sacramento": (
        "sacramento",
        "sac",
        "sacto",
        "sac town",
        "elk grove",
        "roseville",
        "folsom",
        "davis",
        "rocklin",
        "citrus heights",
    ),
    "bay-area": (
        "bay area",
        "the bay",
        "san jose",
        "sj",
        "san francisco",
        "sf",
        "oakland",
        "palo alto",
        "santa clara",
        "sunnyvale",
        "fremont",
        "mountain view",
        "cupertino",
        "milpitas",
        "silicon valley",
    ),
}


class YesNo(enum.StrEnum):
    yes = "yes"
    no = "no"


def find_code(text: str) -> str | None:
    """A booking code (e.g. "MH7K2QXR") in the original text, upper-cased."""
    match = CODE.search(text)
    return match.group(1).upper() if match else None


def has_card_number(text: str) -> bool:
    """A card number, or the mark left where one was removed before the message was stored."""
    if CARD_REMOVED in text:
        return True
    return any(len(re.sub(r"\D", "", match)) >= 13 for match in CARD.findall(text))


def redact_numbers(text: str) -> str:
    """`text` with card-like and phone-like numbers removed (never echoed nor read as counts)."""
    return PHONE.sub(" ", CARD.sub(" ", text))


def has_phone_number(text: str) -> bool:
    return PHONE.search(text) is not None


def _clean_name(candidate: str) -> str | None:
    words: list[str] = []
    for word in candidate.split():
        if word.lower() in NOT_NAMES:
            break
        words.append(word)
    if not words:
        return None
    return " ".join(word if word[:1].isupper() else word.capitalize() for word in words)


def find_name(text: str, *, expecting: bool = False) -> str | None:
    """A name the customer gave ("my name is Jane Roe", "this is Jane", "it's under Roe").

    With `expecting` (we just asked for a name) a short reply of name-like words is a name.
    """
    lowered = text.lower().replace("\u2019", "'")
    for lead in NAME_LEADS:
        for match in re.finditer(rf"(?:^|\b){re.escape(lead)}\b", lowered):
            after = NAME_AFTER.match(text, match.end())
            if not after:
                continue
            if lead in WEAK_LEADS and not expecting and not after.group(1)[:1].isupper():
                continue
            name = _clean_name(after.group(1))
            if name:
                return name
    if expecting:
        words = re.findall(NAME_WORD, text)
        if 1 <= len(words) <= 4 and re.fullmatch(
            rf"\s*{NAME_WORD}(?:\s+{NAME_WORD}){{0,3}}\s*[.!]?\s*", text
        ):
            name = _clean_name(" ".join(words))
            if name and len(name.split()) == len(words):
                return name
    return None


def find_yes_no(text: str) -> YesNo | None:
    """Whether a short reply agrees or refuses; None when it is neither (or both)."""
    words = tokens(text)
    if not words or len(words) > 12:
        return None
    head = " ".join(words[:3])
    said_no = has_phrase(head, NO) or has_phrase(text, ("don't book", "do not book", "not that"))
    said_yes = has_phrase(head, YES)
    if not said_yes and not said_no and len(words[0]) >= 3:
        said_yes = (
            process.extractOne(
                words[0], ("yes", "yeah", "yep", "sure", "okay"), scorer=fuzz.ratio, score_cutoff=85
            )
            is not None
        )
    if said_no and not said_yes:
        return YesNo.no
    if said_yes and not said_no:
        return YesNo.yes
    if said_yes and said_no:
        return YesNo.no if words[0] in NO else YesNo.yes
    return None


def find_region(text: str) -> str | None:
    """The service region slug a place name points to."""
    for slug, names in REGIONS.items():
        if has_phrase(text, names):
            return slug
    for word in tokens(text):
        if len(word) >= 7 and fuzz.ratio(word, "sacramento") >= 85:
            return "sacramento"
    return None
