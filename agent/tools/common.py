"""Shared pieces of the agent's business tools: who and where, speakable words, JSON views.

Messages built here are plain sentences (no Markdown, no lists) that work both spoken
and as a text message. `data` views are JSON-safe (ISO dates, "HH:MM" times, dollars).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from agent.nlu.entities import CARD_REMOVED
from agent.tools.base import Runner, Tool, ToolContext, ToolResult
from booking_tools.bookings import service as bookings
from booking_tools.bookings.models import Booking, BookingStatus
from booking_tools.bookings.schemas import QuoteOut, dollars
from booking_tools.bookings.service import SlotState
from booking_tools.customers.models import Customer
from booking_tools.deposits.models import Deposit
from booking_tools.deposits.providers import PaymentProvider
from booking_tools.locations.models import Location
from booking_tools.locations.service import LocationNotFound, get_location
from booking_tools.messaging.models import MessageKind
from booking_tools.messaging.service import blocked_reason
from hibachi.context import AppContext
from hibachi.db import unit_of_work
from hibachi.errors import DomainError

LOCATION_HELP = "We cook in the Bay Area and around Sacramento. Which one is the event in?"
# 13 to 19 digits, optionally grouped by spaces or dashes: a payment card number.
CARD_NUMBER = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")


# -- who and where ---------------------------------------------------------------


def actor(ctx: ToolContext) -> str:
    """The audit actor of an agent action."""
    return f"agent:{ctx.conversation_id}"


async def resolve_location(session: AsyncSession, ctx: ToolContext, slug: str | None) -> Location:
    """The location asked for, or the one whose number the customer contacted."""
    try:
        return await get_location(session, slug=(slug or ctx.location_slug).strip().lower())
    except LocationNotFound as exc:
        raise LocationNotFound(LOCATION_HELP) from exc


def redact_cards(text: str | None) -> str | None:
    """`text` with anything that looks like a card number removed (we never store those)."""
    if text is None:
        return None
    return CARD_NUMBER.sub(CARD_REMOVED, text)


def payments(app: AppContext) -> PaymentProvider:
    provider: PaymentProvider = app.extras["payments"]
    return provider


def texts_blocked(customer: Customer) -> bool:
    """Whether booking texts (deposit links, confirmations) to this customer are blocked."""
    return blocked_reason(customer, MessageKind.transactional) is not None


# -- speakable words -------------------------------------------------------------


def sentence(text: str) -> str:
    """A service detail as a sentence: capitalised, ending with a full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def say_date(day: date) -> str:
    """'Saturday, December 5'."""
    return f"{day:%A, %B} {day.day}"


def say_time(at: time) -> str:
    """'6 pm', '12 pm', '6:30 pm'."""
    hour = at.hour % 12 or 12
    suffix = "am" if at.hour < 12 else "pm"
    return f"{hour} {suffix}" if at.minute == 0 else f"{hour}:{at.minute:02d} {suffix}"


def say_when(day: date, at: time) -> str:
    return f"{say_date(day)} at {say_time(at)}"


def say_moment(moment: datetime, tz: str) -> str:
    """An instant as local words: 'Tuesday, March 5 at 10:30 am'."""
    local = moment.astimezone(ZoneInfo(tz))
    return say_when(local.date(), local.time())


def say_money(cents: int) -> str:
    """'$720', '$786.60'."""
    return f"${cents // 100:,}" if cents % 100 == 0 else f"${cents / 100:,.2f}"


def say_list(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def say_party(adults: int, children: int = 0, toddlers: int = 0) -> str:
    parts = [plural(adults, "adult")]
    if children:
        parts.append(plural(children, "child", "children"))
    if toddlers:
        parts.append(plural(toddlers, "child under 3", "children under 3"))
    return say_list(parts)


def say_status(booking: Booking) -> str:
    return {
        BookingStatus.pending_deposit: "waiting for its $100 deposit",
        BookingStatus.confirmed: "confirmed",
        BookingStatus.completed: "completed",
        BookingStatus.cancelled: "cancelled",
    }[booking.status]


# -- JSON views ------------------------------------------------------------------


def hhmm(at: time) -> str:
    return at.strftime("%H:%M")


def quote_view(booking: Booking) -> dict[str, Any]:
    return QuoteOut.of(bookings.quote_of(booking)).model_dump()


def deposit_view(deposit: Deposit | None) -> dict[str, Any] | None:
    if deposit is None:
        return None
    return {
        "amount": dollars(deposit.amount_cents),
        "status": deposit.status.value,
        "payment_url": deposit.payment_url,
        "expires_at": deposit.expires_at.isoformat(),
        "paid_at": deposit.paid_at.isoformat() if deposit.paid_at else None,
    }


def booking_view(booking: Booking, deposit: Deposit | None) -> dict[str, Any]:
    """The caller's own booking for the model (location and customer must be loaded)."""
    return {
        "code": booking.code,
        "status": booking.status.value,
        "location": booking.location.slug,
        "customer_name": booking.customer_name,
        "event_date": booking.event_date.isoformat(),
        "start_time": hhmm(booking.start_time),
        "adults": booking.adults,
        "children": booking.children,
        "toddlers": booking.toddlers,
        "filet_upgrades": booking.filet_upgrades,
        "lobster_upgrades": booking.lobster_upgrades,
        "travel_miles": booking.travel_miles,
        "address": booking.address,
        "notes": booking.notes,
        "points_redeemed": booking.points_redeemed,
        "reschedule_count": booking.reschedule_count,
        "quote": quote_view(booking),
        "deposit": deposit_view(deposit),
    }


def slot_view(state: SlotState) -> dict[str, Any]:
    return {
        "date": state.event_date.isoformat(),
        "start": hhmm(state.start_time),
        "remaining": state.remaining,
    }


# -- slots -----------------------------------------------------------------------


async def other_open_slots(
    ctx: ToolContext, *, location_slug: str, day: date, taken: time
) -> list[SlotState]:
    """Open slots on `day` other than `taken` (read in its own short transaction)."""
    async with unit_of_work(ctx.app.sessions) as session:
        location = await resolve_location(session, ctx, location_slug)
        states = await bookings.slot_states(session, location=location, first=day, last=day, now=ctx.now)
    return [s for s in states if s.remaining > 0 and s.start_time != taken]


def slot_full_result(day: date, at: time, alternatives: Sequence[SlotState]) -> ToolResult:
    """A full slot: offer the other open slots that day, else the waitlist."""
    if alternatives:
        times = say_list([say_time(s.start_time) for s in alternatives])
        verb = "is" if len(alternatives) == 1 else "are"
        message = (
            f"{say_when(day, at)} is fully booked, but {times} {verb} open that day. "
            f"I can also put you on the waitlist for {say_time(at)}."
        )
    else:
        message = (
            f"{say_when(day, at)} is fully booked, and nothing else is open that day. "
            f"I can put you on the waitlist for {say_time(at)}, or look at other days."
        )
    return ToolResult(
        ok=False,
        message=message,
        data={
            "requested": {"date": day.isoformat(), "start": hhmm(at)},
            "alternatives": [slot_view(s) for s in alternatives],
            "waitlist_available": True,
        },
        error="SlotUnavailable",
    )


# -- tools -----------------------------------------------------------------------


def make_tool(*, name: str, description: str, args: type[BaseModel], run: Runner) -> Tool:
    """A `Tool` whose uncaught domain errors come back as speakable sentences."""

    async def speakable(ctx: ToolContext, arguments: Any) -> ToolResult:
        try:
            return await run(ctx, arguments)
        except DomainError as exc:
            return ToolResult(ok=False, message=sentence(str(exc.detail)), error=exc.name)

    return Tool(name=name, description=description, args=args, run=speakable)
