"""Party size and upgrades: "15 adults and 4 kids", "party of 20", "2 toddlers", "lobster for 5".

Runs on normalised text, where spelled numbers are already digits ("twenty" -> "20",
"a dozen" -> "12").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ADULTS = re.compile(r"\b(\d{1,3})\s+(?:adults?|grown[- ]?ups?|grownups|big people|teens?|teenagers?)\b")
TODDLERS = re.compile(
    r"\b(\d{1,3})\s+(?:toddlers?|babies|baby|infants?|little ones"
    r"|(?:kids?|children|child)\s+under\s+(?:3|three))\b"
)
CHILDREN = re.compile(r"\b(\d{1,3})\s+(?:kids?|children|childs|child|boys|girls)\b(?!\s+under\s+(?:3|three))")
TOTAL = (
    re.compile(r"\b(?:party|group|table)\s+(?:of|for)\s+(\d{1,3})\b"),
    re.compile(r"\b(\d{1,3})\s+(?:people|persons?|guests?|pax|folks|of us|heads|total|in total)\b"),
    re.compile(r"\b(?:we are|we're|we will be|we'll be|there are|there will be|there'll be)\s+(\d{1,3})\b"),
    re.compile(
        r"\b(?:for|feed|serve|total of)\s+(\d{1,3})\b"
        r"(?!\s*(?:/|:|am\b|pm\b|o'?clock|st\b|nd\b|rd\b|th\b|adults?|kids?|child|children|toddlers?))"
    ),
)
BARE = re.compile(r"^\s*(?:about|around|maybe|like)?\s*(\d{1,3})\s*(?:ish)?\s*[.!]?\s*$")
UPGRADE_BEFORE = r"\b(\d{{1,3}}|all|everyone|everybody|each)\s+(?:[a-z']+\s+){{0,3}}?{item}"
UPGRADE_AFTER = r"{item}\w*(?:\s+\w+){{0,3}}?\s+(?:for|x)\s*(\d{{1,3}}|all|everyone|everybody|each)\b"
UPGRADES = {
    "filet": r"(?:filets?|filet mignons?|fillets?|mignons?)",
    "lobster": r"(?:lobsters?|lobster tails?)",
}


@dataclass(slots=True, frozen=True)
class PartyMention:
    """Who is coming, as far as the text says; `None` means not mentioned."""

    adults: int | None = None
    children: int | None = None
    toddlers: int | None = None
    total: int | None = None

    @property
    def empty(self) -> bool:
        return self.adults is None and self.children is None and self.toddlers is None and self.total is None


def _sum(pattern: re.Pattern[str], text: str) -> int | None:
    counts = [int(match.group(1)) for match in pattern.finditer(text)]
    return sum(counts) if counts else None


def find_party(text: str, *, expecting: bool = False) -> PartyMention:
    """Guests mentioned in normalised `text`; a bare number counts as the total only when `expecting`."""
    adults = _sum(ADULTS, text)
    toddlers = _sum(TODDLERS, text)
    children = _sum(CHILDREN, text)
    total = None
    for pattern in TOTAL:
        match = pattern.search(text)
        if match:
            total = int(match.group(1))
            break
    if total is None and expecting:
        bare = BARE.match(text)
        total = int(bare.group(1)) if bare else None
    return PartyMention(adults=adults, children=children, toddlers=toddlers, total=total)


def find_upgrades(text: str) -> dict[str, int]:
    """Upgrade counts by kind ("filet", "lobster"); -1 means every guest."""
    found: dict[str, int] = {}
    for kind, item in UPGRADES.items():
        match = re.search(UPGRADE_BEFORE.format(item=item), text) or re.search(
            UPGRADE_AFTER.format(item=item), text
        )
        if match:
            count = match.group(1)
            found[kind] = int(count) if count.isdigit() else -1
        elif re.search(rf"\b{item}", text):
            found[kind] = -1
    return found
