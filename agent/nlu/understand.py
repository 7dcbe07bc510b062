"""One customer message -> intent and slots (the deterministic brain's only view of text)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from agent.nlu.dates import DateMention, find_date
from agent.nlu.entities import (
    YesNo,
    find_code,
    find_name,
    find_region,
    find_yes_no,
    has_card_number,
    has_phone_number,
    redact_numbers,
)
from agent.nlu.intents import Intent, classify, is_question
from agent.nlu.party import PartyMention, find_party, find_upgrades
from agent.nlu.text import normalize, tokens
from agent.nlu.times import TimeMention, find_time


@dataclass(slots=True, frozen=True)
class Understanding:
    """What one message says. Card and phone numbers are dropped before anything is read."""

    text: str
    normalized: str
    intent: Intent
    question: bool
    date: DateMention | None = None
    time: TimeMention | None = None
    party: PartyMention = field(default_factory=PartyMention)
    upgrades: dict[str, int] = field(default_factory=dict)
    name: str | None = None
    code: str | None = None
    region: str | None = None
    yes_no: YesNo | None = None
    card_number: bool = False
    phone_number: bool = False

    @property
    def empty(self) -> bool:
        return not tokens(self.normalized)

    @property
    def has_booking_details(self) -> bool:
        return self.date is not None or self.time is not None or not self.party.empty


def understand(text: str, local_now: datetime, *, expecting: str | None = None) -> Understanding:
    """Read `text` said at `local_now` (customer's local time); `expecting`: the slot just asked for."""
    card = has_card_number(text)
    phone = has_phone_number(text)
    safe = redact_numbers(text) if card or phone else text
    normalized = normalize(safe)
    code = find_code(safe)
    without_code = normalized.replace(code.lower(), " ") if code else normalized
    date = find_date(without_code, local_now, expecting=expecting == "date")
    time = find_time(without_code, expecting=expecting == "time")
    party = find_party(without_code, expecting=expecting == "party")
    details = date is not None or time is not None or not party.empty
    return Understanding(
        text=safe,
        normalized=normalized,
        intent=classify(without_code, has_code=code is not None, has_details=details),
        question=is_question(without_code),
        date=date,
        time=time,
        party=party,
        upgrades=find_upgrades(without_code),
        name=find_name(safe, expecting=expecting == "name"),
        code=code,
        region=find_region(without_code),
        yes_no=find_yes_no(without_code),
        card_number=card,
        phone_number=phone,
    )
