"""Eval scenarios: what a caller does and what must be true afterwards, read from YAML.

A suite file holds a default clock and a list of scenarios::

    suite: core
    clock: "2026-11-20T11:00:00-08:00"      # every trial runs at this instant (ISO, with offset)
    scenarios:
      - name: book-bay-area-party-of-15
        category: booking                   # booking, reschedule, cancel, deposit, loyalty, faq,
                                            # waitlist, optout_help, transfer, adversarial, ...
        channel: sms                        # sms | voice-text | voice-audio
        location: bay-area                  # which line the caller reaches (or `agent_phone:`)
        caller:
          phone: "+14085550140"             # the carrier number: the caller's identity
          persona: "Busy parent planning a birthday"
          knows: "Their name is Dana Cruz"  # facts a simulated caller may use
          wants: "A chef on December 5 at 6 pm for 15 adults"
        clock: "2026-11-20T22:30:00-08:00"  # optional: overrides the suite's clock
        setup:                              # optional state before the first turn
          customers: [{phone: "+14085550140", name: Dana Cruz, points: 1200, opted_out: false}]
          bookings:                         # existing bookings (default phone: the caller's)
            - {code: MHEVALA2, name: Dana Cruz, date: 2026-12-12, time: "18:00", adults: 12,
               status: confirmed, location: bay-area}
          fill: [{location: bay-area, date: 2026-12-05, time: "18:00"}]   # slot booked to capacity
        turns:                              # the scripted caller; a turn is text or a key press
          - "Hi, can I book December 5 at 6pm for 15 adults?"
          - "Dana Cruz"
          - press: "0"
        goal: "Book ..."                    # optional: an LLM plays the caller from persona + goal
        expect:
          booking: {location: bay-area, date: 2026-12-05, time: "18:00", adults: 15, status: pending_deposit}
          deposit_link_sent: true
          replies_include: ["{code}", "re:deposit|payment"]   # substrings (any case), re:regex, {code}
          replies_exclude: ["4111"]
          transfer: forbidden               # required | forbidden, with transfer_reason / transfer_outcome

Every `expect` key is checked against the database, the agent's replies and what the
provider fakes received; see `evals.assertions` for the meaning of each.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from agent.models import TransferOutcome, TransferReason
from booking_tools.bookings.models import BookingStatus
from booking_tools.deposits.models import DepositStatus
from booking_tools.seed import LOCATIONS

CHANNELS = ("sms", "voice-text", "voice-audio")
Channel = Literal["sms", "voice-text", "voice-audio"]
HHMM = Annotated[str, Field(pattern=r"^\d{2}:\d{2}$")]


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("clock must carry a UTC offset, e.g. 2026-11-20T11:00:00-08:00")
    return value


Clock = Annotated[dt.datetime, AfterValidator(_aware)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Caller(Strict):
    phone: str
    persona: str = ""
    knows: str = ""
    wants: str = ""


class Press(Strict):
    """Keypad digits (voice: DTMF; text channels send them as a text)."""

    press: str = Field(pattern=r"^[0-9*#]+$")


Turn = str | Press


class SetupCustomer(Strict):
    phone: str
    name: str | None = None
    points: int | None = None  # spendable (and lifetime) Hibachi Rewards points
    opted_out: bool = False


class SetupBooking(Strict):
    """An existing booking; made `booked_days_before` the clock, then paid if `confirmed`."""

    name: str
    date: dt.date
    time: HHMM = "18:00"
    phone: str | None = None  # default: the caller's
    location: str = "bay-area"
    adults: int = 12
    children: int = 0
    status: Literal["pending_deposit", "confirmed"] = "confirmed"
    # Codes use the real alphabet (no 0, 1, I or O), so the agent can recognise them.
    code: str | None = Field(default=None, pattern=r"^MH[A-HJ-NP-Z2-9]{6}$")
    booked_days_before: int = 10
    reschedules: int = 0  # free reschedules already used


class SetupSlot(Strict):
    """A slot booked to capacity by other customers."""

    date: dt.date
    time: HHMM
    location: str = "bay-area"


class Setup(Strict):
    customers: list[SetupCustomer] = Field(default_factory=list)
    bookings: list[SetupBooking] = Field(default_factory=list)
    fill: list[SetupSlot] = Field(default_factory=list)


class BookingExpect(Strict):
    """Fields a booking must have; only the ones given are checked."""

    location: str | None = None
    date: dt.date | None = None
    time: HHMM | None = None
    adults: int | None = None
    children: int | None = None
    guests: int | None = None  # adults + children + toddlers
    name: str | None = None
    status: BookingStatus | None = None
    deposit: DepositStatus | None = None  # the booking's latest deposit
    reschedules: int | None = None


class WaitlistExpect(Strict):
    date: dt.date
    time: HHMM
    party_size: int | None = None
    location: str | None = None


class TextExpect(Strict):
    """Texts the provider fakes received for `to` ("caller", "staff" or a number)."""

    to: str
    includes: list[str] = Field(default_factory=list)
    count: int | None = None  # exact number of texts, when given


class Expect(Strict):
    booking: BookingExpect | None = None  # the caller has a booking matching these fields
    no_new_booking: bool = False  # no booking was created during the conversation
    bookings_unchanged: bool = False  # every booking made in setup kept its status, day and time
    bookings_by_code: dict[str, BookingExpect] = Field(default_factory=dict)
    deposit_link_sent: bool = False  # the caller's new booking's payment link reached the caller
    loyalty_points: int | Literal["unchanged"] | None = None
    no_ledger_entries: bool = False  # no loyalty ledger line was written during the conversation
    waitlist: WaitlistExpect | None = None
    no_waitlist: bool = False
    opted_out: bool | None = None
    transfer: Literal["required", "forbidden"] | None = None
    transfer_reason: TransferReason | None = None
    transfer_outcome: TransferOutcome | None = None
    replies_include: list[str] = Field(default_factory=list)
    replies_exclude: list[str] = Field(default_factory=list)
    texts: list[TextExpect] = Field(default_factory=list)
    never_stored: list[str] = Field(default_factory=list)  # in no table, reply or text (card numbers)
    tools_called: list[str] = Field(default_factory=list)
    tools_not_called: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_checked(self) -> Expect:
        if not self.model_dump(exclude_defaults=True):
            raise ValueError("expect must check something")
        return self


class Scenario(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    category: str
    channel: Channel = "sms"
    caller: Caller
    location: str | None = None
    agent_phone: str | None = None
    clock: Clock | None = None
    setup: Setup = Field(default_factory=Setup)
    turns: list[Turn] = Field(default_factory=list)
    goal: str | None = None
    max_turns: int = 10  # simulated caller only
    expect: Expect

    @model_validator(mode="after")
    def _has_a_caller(self) -> Scenario:
        if not self.turns and not self.goal:
            raise ValueError(f"scenario {self.name}: give scripted `turns` or a `goal`")
        if self.location is not None and self.location not in LOCATION_PHONES:
            raise ValueError(f"scenario {self.name}: unknown location {self.location!r}")
        return self

    @property
    def called_number(self) -> str:
        """The agent number the caller reaches."""
        if self.agent_phone:
            return self.agent_phone
        return LOCATION_PHONES[self.location or "bay-area"]


class Suite(Strict):
    suite: str
    description: str = ""
    clock: Clock
    scenarios: list[Scenario]

    @model_validator(mode="after")
    def _unique_names(self) -> Suite:
        names = [s.name for s in self.scenarios]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"suite {self.suite}: duplicate scenario names {duplicates}")
        return self

    def clock_for(self, scenario: Scenario) -> dt.datetime:
        return scenario.clock or self.clock


LOCATION_PHONES: dict[str, str] = {str(row["slug"]): str(row["agent_phone"]) for row in LOCATIONS}
STAFF_PHONES: dict[str, str] = {str(row["agent_phone"]): str(row["staff_phone"]) for row in LOCATIONS}


def bundled_suites() -> list[str]:
    """Names of the suites shipped in `evals/suites`."""
    folder = resources.files("evals") / "suites"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A bundled suite by name (`core`), or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        bundled = resources.files("evals") / "suites" / f"{name_or_path}.yaml"
        if not bundled.is_file():
            known = ", ".join(bundled_suites())
            raise FileNotFoundError(
                f"no suite {name_or_path!r}; bundled suites: {known}, or give a YAML path"
            )
        return parse_suite(bundled.read_text(), source=str(name_or_path))
    return parse_suite(path.read_text(), source=str(path))


def parse_suite(text: str, *, source: str = "<string>") -> Suite:
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a suite is a mapping with `suite`, `clock` and `scenarios`")
    return Suite.model_validate(data)
