"""Who the caller is (the carrier number) and which bookings they may see or change.

A booking may be changed from the number it was made with, or by anyone who gives its
code plus the last name on it. A code that belongs to someone else without the right
last name is answered exactly like a code that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from agent.tools.base import ToolContext
from agent.tools.common import say_when
from agent.tools.schemas import BookingRef
from booking_tools.bookings import rules
from booking_tools.bookings import service as bookings
from booking_tools.bookings.errors import BookingNotFound, NotYourBooking
from booking_tools.bookings.models import Booking, BookingStatus
from booking_tools.customers.phone import InvalidPhone, to_e164
from hibachi.errors import Conflict, RuleViolation

ACTIVE = (BookingStatus.pending_deposit, BookingStatus.confirmed)
HISTORY_LIMIT = 500
NOT_FOUND = (
    "I couldn't find a booking with that code for this number. If it was made from another phone, "
    "please give me the booking code and the last name on the booking."
)
NONE_FOR_NUMBER = (
    "I couldn't find an upcoming booking for this number. If it was made from another phone, "
    "please give me the booking code and the last name on the booking."
)


class NoCallerNumber(RuleViolation):
    """The conversation has no usable caller number (withheld or malformed caller ID)."""


class WhichBooking(Conflict):
    """The caller has several upcoming bookings and gave no code."""


def caller_phone(ctx: ToolContext) -> str | None:
    """The caller's number in E.164, or None when caller ID is withheld or malformed."""
    try:
        return to_e164(ctx.customer_phone)
    except InvalidPhone:
        return None


def require_caller_phone(ctx: ToolContext) -> str:
    phone = caller_phone(ctx)
    if phone is None:
        raise NoCallerNumber(
            "I can't see a phone number on this conversation that I could text, so I can't do that "
            "here. Our staff can help."
        )
    return phone


def upcoming(rows: Sequence[Booking], *, now: datetime) -> list[Booking]:
    """Pending or confirmed bookings whose event hasn't ended, soonest first."""
    return sorted(
        (
            b
            for b in rows
            if b.status in ACTIVE
            and rules.event_start(b.location.timezone, b.event_date, b.start_time) + rules.EVENT_LENGTH > now
        ),
        key=lambda b: (b.event_date, b.start_time, b.code),
    )


async def caller_bookings(session: AsyncSession, ctx: ToolContext) -> list[Booking]:
    """The caller's upcoming bookings (by carrier number; none when it is withheld)."""
    phone = caller_phone(ctx)
    if phone is None:
        return []
    rows, _ = await bookings.list_bookings(session, phone=phone, status=None, limit=HISTORY_LIMIT, offset=0)
    return upcoming(rows, now=ctx.now)


async def booking_for_change(session: AsyncSession, ctx: ToolContext, ref: BookingRef) -> Booking:
    """The booking the caller means, locked, once they are allowed to change it.

    Raises `BookingNotFound` with the same words whether the code doesn't exist or
    belongs to someone else (without the right last name).
    """
    if ref.code:
        try:
            found = await bookings.booking_by_code(session, code=ref.code)
            bookings.authorize_change(found, phone=caller_phone(ctx), code=ref.code, last_name=ref.last_name)
        except (BookingNotFound, NotYourBooking):
            raise BookingNotFound(NOT_FOUND) from None
    else:
        mine = await caller_bookings(session, ctx)
        if not mine:
            raise BookingNotFound(NONE_FOR_NUMBER)
        if len(mine) > 1:
            which = " and ".join(f"{b.code} on {say_when(b.event_date, b.start_time)}" for b in mine[:4])
            raise WhichBooking(f"You have {len(mine)} upcoming bookings: {which}. Which one do you mean?")
        found = mine[0]
    # Re-read under the row lock (the first read was not locked).
    booking_id = found.id
    session.expire(found)
    return await bookings.load_booking(session, booking_id=booking_id, lock=True)


def made_from_this_number(ctx: ToolContext, booking: Booking) -> bool:
    return caller_phone(ctx) == booking.customer.phone
