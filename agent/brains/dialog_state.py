"""The deterministic brain's dialog state, kept JSON-safe in `BrainRequest.state`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

STATE_KEY = "dialog"


@dataclass(slots=True)
class Dialog:
    """Where the conversation is: the task under way, what was asked, what is known."""

    flow: str | None = None  # "book", "waitlist", "cancel", "reschedule", "quote"
    awaiting: str | None = None  # the answer we wait for: "date", "time", "party", "name", "confirm", ...
    question: str | None = None  # the question asked, to repeat after a side question
    date: str | None = None  # ISO day
    time: str | None = None  # "12:00" / "15:00" / "18:00"
    adults: int | None = None
    children: int = 0
    toddlers: int = 0
    filet: int = 0
    lobster: int = 0
    name: str | None = None
    region: str | None = None
    code: str | None = None
    last_name: str | None = None
    booking: dict[str, Any] | None = None  # the booking being changed, as list_my_bookings gave it
    checked_date: str | None = None
    open_times: list[str] = field(default_factory=list)
    alternatives: list[dict[str, str]] = field(default_factory=list)
    quote: dict[str, Any] | None = None  # the last get_quote data for this party
    misses: int = 0
    human_offered: bool = False
    human_reason: str | None = None

    @classmethod
    def load(cls, state: dict[str, Any]) -> Dialog:
        raw = state.get(STATE_KEY)
        if not isinstance(raw, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in known})

    def save(self, state: dict[str, Any]) -> None:
        state[STATE_KEY] = asdict(self)

    def details(self) -> tuple[Any, ...]:
        """What the customer told us, in a fixed order (date, time, party [2:7], name, region, code)."""
        return (
            self.date,
            self.time,
            self.adults,
            self.children,
            self.toddlers,
            self.filet,
            self.lobster,
            self.name,
            self.region,
            self.code,
        )

    @property
    def guests(self) -> int:
        return (self.adults or 0) + self.children + self.toddlers

    def forget_event(self) -> None:
        """Drop the day, time and availability (a new task or a finished booking)."""
        self.date = self.time = self.checked_date = self.quote = None
        self.open_times = []
        self.alternatives = []

    def finish(self) -> None:
        self.flow = self.awaiting = self.question = None
        self.booking = None
        self.code = None
