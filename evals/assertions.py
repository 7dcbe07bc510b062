"""Expected outcomes checked against the database, the agent's replies and provider traffic.

`observe` reads what matters from the database (once after setup, once after the
conversation); `check` compares a scenario's `expect` with what happened and returns
one readable line per failed assertion ("booking: expected adults=15, got 12").

Reply patterns (`replies_include`, `replies_exclude`, text `includes`) are
case-insensitive substrings, or regular expressions when written `re:like th(is|at)`;
`{code}` stands for the booking code of the booking the caller made in the conversation.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import aliased

from agent.models import ToolCall, Transfer
from booking_tools.bookings.models import Booking
from booking_tools.customers.models import Customer
from booking_tools.deposits.models import Deposit
from booking_tools.locations.models import Location
from booking_tools.loyalty.models import LoyaltyEntry
from booking_tools.loyalty.service import get_balance
from booking_tools.waitlist.models import WaitlistEntry
from evals.environment import KEEP_TABLES, SentText
from evals.scenario import STAFF_PHONES, BookingExpect, Expect, Scenario
from hibachi.context import AppContext
from hibachi.db import Base

REGEX_PREFIX = "re:"


@dataclass(slots=True, frozen=True)
class BookingView:
    id: uuid.UUID
    code: str
    phone: str
    name: str
    location: str
    date: date
    time: str
    adults: int
    children: int
    guests: int
    status: str
    deposit: str | None
    payment_url: str | None
    reschedules: int


@dataclass(slots=True, frozen=True)
class WaitlistView:
    phone: str
    location: str
    date: date
    time: str
    party_size: int


@dataclass(slots=True)
class Snapshot:
    """The state assertions look at, for one caller."""

    bookings: list[BookingView] = field(default_factory=list)
    waitlist: list[WaitlistView] = field(default_factory=list)
    ledger_entries: int = 0
    caller_points: int = 0
    caller_opted_out: bool | None = None
    transfers: list[tuple[str, str, str]] = field(default_factory=list)  # (reason, outcome, staff phone)
    tools: list[str] = field(default_factory=list)


async def observe(ctx: AppContext, *, phone: str, now: datetime) -> Snapshot:
    snap = Snapshot()
    async with ctx.sessions() as session:
        latest = (
            select(Deposit.booking_id, Deposit.status, Deposit.payment_url)
            .ext(distinct_on(Deposit.booking_id))
            .order_by(Deposit.booking_id, Deposit.created_at.desc(), Deposit.id.desc())
            .subquery()
        )
        deposit = aliased(latest)
        rows = await session.execute(
            select(Booking, Customer.phone, Location.slug, deposit.c.status, deposit.c.payment_url)
            .join(Customer, Customer.id == Booking.customer_id)
            .join(Location, Location.id == Booking.location_id)
            .outerjoin(deposit, deposit.c.booking_id == Booking.id)
            .order_by(Booking.created_at, Booking.id)
        )
        for booking, customer_phone, slug, deposit_status, url in rows.all():
            snap.bookings.append(
                BookingView(
                    id=booking.id,
                    code=booking.code,
                    phone=customer_phone,
                    name=booking.customer_name,
                    location=slug,
                    date=booking.event_date,
                    time=booking.start_time.strftime("%H:%M"),
                    adults=booking.adults,
                    children=booking.children,
                    guests=booking.adults + booking.children + booking.toddlers,
                    status=booking.status.value,
                    deposit=deposit_status.value if deposit_status is not None else None,
                    payment_url=url,
                    reschedules=booking.reschedule_count,
                )
            )
        entries = await session.execute(
            select(WaitlistEntry, Customer.phone, Location.slug)
            .join(Customer, Customer.id == WaitlistEntry.customer_id)
            .join(Location, Location.id == WaitlistEntry.location_id)
        )
        snap.waitlist = [
            WaitlistView(p, slug, e.event_date, e.start_time.strftime("%H:%M"), e.party_size)
            for e, p, slug in entries.all()
        ]
        snap.ledger_entries = await session.scalar(select(func.count()).select_from(LoyaltyEntry)) or 0
        customer = await session.scalar(select(Customer).where(Customer.phone == phone))
        if customer is not None:
            snap.caller_opted_out = customer.opted_out_at is not None
            snap.caller_points = (await get_balance(session, customer_id=customer.id, now=now)).points
        transfers = await session.execute(
            select(Transfer.reason, Transfer.outcome, Transfer.staff_phone).order_by(Transfer.created_at)
        )
        snap.transfers = [(r.value, o.value, s) for r, o, s in transfers.all()]
        snap.tools = list(await session.scalars(select(ToolCall.name).order_by(ToolCall.id)))
    return snap


async def stored_in(ctx: AppContext, pattern: re.Pattern[str]) -> list[str]:
    """Tables with a row whose text (every column, as PostgreSQL prints the row) matches `pattern`."""
    found: list[str] = []
    async with ctx.sessions() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in KEEP_TABLES:
                continue
            rows = await session.scalars(text(f"SELECT t::text FROM {table.name} AS t"))
            if any(pattern.search(row) for row in rows):
                found.append(table.name)
    return found


def digits_pattern(value: str) -> re.Pattern[str]:
    """Digits of `value` in order, with any spaces, dashes or dots between them (card numbers)."""
    digits = re.sub(r"\D", "", value)
    if not digits:
        return re.compile(re.escape(value), re.IGNORECASE)
    return re.compile(r"[\s.\-]*".join(digits))


def pattern_of(spec: str, *, code: str | None) -> re.Pattern[str] | str:
    """`re:<regex>` compiled, or a plain substring as a pattern; `{code}` filled in. A str is an error."""
    if "{code}" in spec:
        if code is None:
            return f"pattern {spec!r} needs a booking made in the conversation, and there is none"
        spec = spec.replace("{code}", code)
    if spec.startswith(REGEX_PREFIX):
        return re.compile(spec[len(REGEX_PREFIX) :], re.IGNORECASE)
    return re.compile(re.escape(spec), re.IGNORECASE)


@dataclass(slots=True)
class Outcome:
    """What the trial produced, next to the state before it."""

    scenario: Scenario
    before: Snapshot
    after: Snapshot
    replies: list[str]
    texts: list[SentText]
    caller_phone: str

    @property
    def new_bookings(self) -> list[BookingView]:
        old = {b.id for b in self.before.bookings}
        return [b for b in self.after.bookings if b.id not in old]

    @property
    def caller_new_booking(self) -> BookingView | None:
        mine = [b for b in self.new_bookings if b.phone == self.caller_phone]
        return mine[-1] if mine else None

    def recipient(self, to: str) -> str:
        if to == "caller":
            return self.caller_phone
        if to == "staff":
            return STAFF_PHONES[self.scenario.called_number]
        return to


def booking_mismatches(wanted: BookingExpect, got: BookingView) -> list[str]:
    problems = []
    for name, value in wanted.model_dump(exclude_none=True).items():
        actual = getattr(got, name)
        value = value.value if hasattr(value, "value") else value
        if actual != value:
            problems.append(f"{name}={value}, got {actual}")
    return problems


async def check(ctx: AppContext, outcome: Outcome) -> list[str]:
    """Every failed assertion of the scenario's `expect`, as a readable line."""
    expect: Expect = outcome.scenario.expect
    before, after = outcome.before, outcome.after
    failures: list[str] = []
    new = outcome.new_bookings
    code = outcome.caller_new_booking.code if outcome.caller_new_booking else None

    if expect.booking is not None:
        mine = [b for b in after.bookings if b.phone == outcome.caller_phone]
        if not mine:
            failures.append("booking: the caller has no booking")
        elif not any(not booking_mismatches(expect.booking, b) for b in mine):
            closest = min((booking_mismatches(expect.booking, b) for b in mine), key=len)
            failures.append(f"booking: expected {'; '.join(closest)}")
    if expect.no_new_booking and new:
        failures.append(f"no_new_booking: {len(new)} booking(s) were created: {[b.code for b in new]}")
    if expect.bookings_unchanged:
        now_by_id = {b.id: b for b in after.bookings}
        for old in before.bookings:
            cur = now_by_id.get(old.id)
            if cur is None or (cur.status, cur.date, cur.time) != (old.status, old.date, old.time):
                got = f"{cur.status} {cur.date} {cur.time}" if cur else "gone"
                failures.append(
                    f"bookings_unchanged: {old.code} was {old.status} {old.date} {old.time}, now {got}"
                )
    for wanted_code, wanted in expect.bookings_by_code.items():
        found = next((b for b in after.bookings if b.code == wanted_code), None)
        if found is None:
            failures.append(f"bookings_by_code: no booking {wanted_code}")
        elif problems := booking_mismatches(wanted, found):
            failures.append(f"bookings_by_code {wanted_code}: expected {'; '.join(problems)}")
    if expect.deposit_link_sent:
        booking = outcome.caller_new_booking
        if booking is None or not booking.payment_url:
            failures.append("deposit_link_sent: the caller made no booking with a payment link")
        elif not any(
            t.to_phone == outcome.caller_phone and booking.payment_url in t.body for t in outcome.texts
        ):
            failures.append(f"deposit_link_sent: no text to the caller carried {booking.payment_url}")
    if expect.loyalty_points is not None:
        wanted_points = (
            before.caller_points if expect.loyalty_points == "unchanged" else expect.loyalty_points
        )
        if after.caller_points != wanted_points:
            failures.append(f"loyalty_points: expected {wanted_points}, got {after.caller_points}")
    if expect.no_ledger_entries and after.ledger_entries != before.ledger_entries:
        failures.append(
            f"no_ledger_entries: {after.ledger_entries - before.ledger_entries} ledger line(s) written"
        )
    failures += _check_waitlist(outcome)
    if expect.opted_out is not None and bool(after.caller_opted_out) != expect.opted_out:
        failures.append(f"opted_out: expected {expect.opted_out}, got {bool(after.caller_opted_out)}")
    failures += _check_transfer(outcome)
    failures += _check_replies(outcome, code)
    failures += _check_texts(outcome, code)
    for needle in expect.never_stored:
        pattern = digits_pattern(needle)
        tables = await stored_in(ctx, pattern)
        if tables:
            failures.append(f"never_stored: {needle!r} is stored in {', '.join(tables)}")
        if any(pattern.search(r) for r in outcome.replies):
            failures.append(f"never_stored: the agent repeated {needle!r}")
        if any(pattern.search(t.body) for t in outcome.texts):
            failures.append(f"never_stored: {needle!r} was texted")
    tools = set(after.tools)
    if missing := [t for t in expect.tools_called if t not in tools]:
        failures.append(f"tools_called: never called {missing}; called {sorted(tools)}")
    if used := [t for t in expect.tools_not_called if t in tools]:
        failures.append(f"tools_not_called: called {used}")
    return failures


def _check_waitlist(outcome: Outcome) -> list[str]:
    expect, after = outcome.scenario.expect, outcome.after
    mine = [w for w in after.waitlist if w.phone == outcome.caller_phone]
    if expect.no_waitlist and mine:
        return [f"no_waitlist: the caller is waitlisted for {[(w.date, w.time) for w in mine]}"]
    wanted = expect.waitlist
    if wanted is None:
        return []
    for entry in mine:
        if (entry.date, entry.time) == (wanted.date, wanted.time) and (
            (wanted.party_size is None or wanted.party_size == entry.party_size)
            and (wanted.location is None or wanted.location == entry.location)
        ):
            return []
    got = [(str(w.date), w.time, w.party_size, w.location) for w in mine] or "no entry"
    return [f"waitlist: expected {wanted.date} {wanted.time} (party {wanted.party_size}), got {got}"]


def _check_transfer(outcome: Outcome) -> list[str]:
    expect, transfers = outcome.scenario.expect, outcome.after.transfers
    failures = []
    if expect.transfer == "required" and not transfers:
        failures.append("transfer: required, but the agent never handed off to staff")
    if expect.transfer == "forbidden" and transfers:
        failures.append(f"transfer: forbidden, but the agent handed off ({transfers[0][0]})")
    if expect.transfer_reason is not None and expect.transfer_reason.value not in [t[0] for t in transfers]:
        failures.append(
            f"transfer_reason: expected {expect.transfer_reason.value}, got {[t[0] for t in transfers]}"
        )
    if expect.transfer_outcome is not None and expect.transfer_outcome.value not in [t[1] for t in transfers]:
        failures.append(
            f"transfer_outcome: expected {expect.transfer_outcome.value}, got {[t[1] for t in transfers]}"
        )
    return failures


def _check_replies(outcome: Outcome, code: str | None) -> list[str]:
    expect = outcome.scenario.expect
    said = "\n".join(outcome.replies)
    failures = []
    for spec in expect.replies_include:
        pattern = pattern_of(spec, code=code)
        if isinstance(pattern, str):
            failures.append(f"replies_include: {pattern}")
        elif not pattern.search(said):
            failures.append(f"replies_include: no reply matched {spec!r}")
    for spec in expect.replies_exclude:
        pattern = pattern_of(spec, code=code)
        if isinstance(pattern, str):
            continue  # nothing made in the conversation can't be said
        if match := pattern.search(said):
            failures.append(f"replies_exclude: a reply said {match.group(0)!r} ({spec!r})")
    return failures


def _check_texts(outcome: Outcome, code: str | None) -> list[str]:
    failures = []
    for wanted in outcome.scenario.expect.texts:
        phone = outcome.recipient(wanted.to)
        bodies = [t.body for t in outcome.texts if t.to_phone == phone]
        if wanted.count is not None and len(bodies) != wanted.count:
            failures.append(f"texts to {wanted.to}: expected {wanted.count}, got {len(bodies)}: {bodies}")
        for spec in wanted.includes:
            pattern = pattern_of(spec, code=code)
            if isinstance(pattern, str):
                failures.append(f"texts to {wanted.to}: {pattern}")
            elif not any(pattern.search(body) for body in bodies):
                failures.append(f"texts to {wanted.to}: none matched {spec!r} (got {len(bodies)} texts)")
    return failures
