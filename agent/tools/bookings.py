"""Making a booking and listing the caller's own bookings."""

from __future__ import annotations

import hashlib
from datetime import time

from agent.tools.base import ToolContext, ToolResult
from agent.tools.common import (
    LOCATION_HELP,
    actor,
    booking_view,
    make_tool,
    other_open_slots,
    payments,
    plural,
    redact_cards,
    say_money,
    say_party,
    say_status,
    say_when,
    slot_full_result,
    texts_blocked,
)
from agent.tools.identity import caller_bookings, require_caller_phone
from agent.tools.schemas import CreateBooking, ListMyBookings
from booking_tools.bookings import pricing
from booking_tools.bookings import service as bookings
from booking_tools.bookings.errors import BookingRuleViolation, SlotUnavailable
from booking_tools.bookings.models import BookingStatus
from booking_tools.bookings.schemas import BookingCreate
from booking_tools.deposits import service as deposits
from booking_tools.locations.service import LocationNotFound
from hibachi.db import unit_of_work


def needs_staff(guests: int) -> ToolResult:
    return ToolResult(
        ok=False,
        message=(
            f"Parties over {pricing.MAX_GUESTS} guests are planned with our staff, who also handle "
            "corporate events and weddings. Would you like me to pass you to them?"
        ),
        data={"guests": guests, "max_guests": pricing.MAX_GUESTS},
        error="NeedsStaff",
    )


def idempotency_key(ctx: ToolContext, args: CreateBooking) -> str:
    """The same booking asked twice in one conversation (a retried call) is made once."""
    digest = hashlib.sha256(args.model_dump_json().encode()).hexdigest()[:16]
    return f"agent:{ctx.conversation_id}:{digest}"


async def run_create_booking(ctx: ToolContext, args: CreateBooking) -> ToolResult:
    guests = args.adults + args.children + args.toddlers
    if guests > pricing.MAX_GUESTS:
        return needs_staff(guests)
    slug = (args.location or ctx.location_slug).strip().lower()
    start = time.fromisoformat(args.start_time)
    booking_in = BookingCreate(
        location=slug,
        customer_phone=require_caller_phone(ctx),
        customer_name=redact_cards(args.customer_name.strip()) or args.customer_name,
        event_date=args.event_date,
        start_time=start,
        adults=args.adults,
        children=args.children,
        toddlers=args.toddlers,
        filet_upgrades=args.filet_upgrades,
        lobster_upgrades=args.lobster_upgrades,
        travel_miles=args.travel_miles,
        address=redact_cards(args.address),
        notes=redact_cards(args.notes),
    )
    key = base_key = idempotency_key(ctx, args)
    try:
        async with unit_of_work(ctx.app.sessions, queue=ctx.app.queue) as session:
            while True:
                new = await bookings.create_booking_with_deposit(
                    session,
                    booking_in=booking_in,
                    payments=payments(ctx.app),
                    now=ctx.now,
                    idempotency_key=key,
                    actor=actor(ctx),
                )
                if new.created or new.booking.status is not BookingStatus.cancelled:
                    break
                # The same request made earlier was since cancelled: this is a new booking.
                key = f"{base_key}:{new.booking.code}"
            booking, deposit = new.booking, new.deposit
            blocked = texts_blocked(booking.customer)
            view = booking_view(booking, deposit)
    except LocationNotFound:
        return ToolResult(ok=False, message=LOCATION_HELP, error="LocationNotFound")
    except BookingRuleViolation as exc:
        return ToolResult(ok=False, message=f"I can't book that: {exc.detail}.", error=exc.name)
    except SlotUnavailable:
        alternatives = await other_open_slots(ctx, location_slug=slug, day=args.event_date, taken=start)
        return slot_full_result(args.event_date, start, alternatives)

    quote = bookings.quote_of(booking)
    texted = deposit is not None and not blocked
    opening = "You're booked" if new.created else "That booking was already made"
    message = (
        f"{opening}: {say_when(booking.event_date, booking.start_time)} for "
        f"{say_party(booking.adults, booking.children, booking.toddlers)}, booking code {booking.code}. "
    )
    if booking.status is BookingStatus.confirmed:
        message += "It's confirmed; the deposit is paid."
    elif texted:
        message += (
            "I've texted you a link for the $100 deposit; the booking is confirmed once it's paid, "
            "and released if it isn't paid within 24 hours."
        )
    else:
        message += (
            "You've opted out of our texts, so I couldn't text the $100 deposit link; reply START to "
            "turn texts back on, or our staff can help. Unpaid bookings are released after 24 hours."
        )
    message += (
        f" The estimated total is {say_money(quote.total)} before tip, and the deposit counts toward it."
    )
    return ToolResult(
        ok=True,
        message=message,
        data={"booking": view, "created": new.created, "deposit_link_texted": texted},
    )


create_booking = make_tool(
    name="create_booking",
    description=(
        "Book a chef for the customer on this phone number: holds the slot, opens the $100 deposit "
        "and texts its payment link (the booking is confirmed once paid, released after 24 hours "
        "unpaid). Call it only after the customer confirmed the date, start time, guest counts and "
        "their name. Never for more than 60 guests, corporate events or weddings: offer "
        "transfer_to_staff instead (this tool answers error NeedsStaff for over 60 guests). When the "
        "slot is full it fails with error SlotUnavailable and data.alternatives (other open slots that "
        "day); offer those, then join_waitlist. Repeating the same call returns the same booking. "
        "Never put card numbers in any field. data: booking {code, status, location, customer_name, "
        "event_date, start_time, adults, children, toddlers, travel_miles, address, notes, quote {...in "
        "dollars}, deposit {amount, status, payment_url, expires_at}}, created, deposit_link_texted."
    ),
    args=CreateBooking,
    run=run_create_booking,
)


async def run_list_my_bookings(ctx: ToolContext, args: ListMyBookings) -> ToolResult:
    async with unit_of_work(ctx.app.sessions) as session:
        mine = await caller_bookings(session, ctx)
        live = await deposits.live_deposits(session, booking_ids=[b.id for b in mine])
    data = {"bookings": [booking_view(b, live.get(b.id)) for b in mine]}
    if not mine:
        return ToolResult(
            ok=True,
            message=(
                "I don't see any upcoming bookings for this number. If you booked from another phone, "
                "the booking code and the last name on it let me change it."
            ),
            data=data,
        )
    described = [
        f"{b.code} on {say_when(b.event_date, b.start_time)} for "
        f"{plural(b.adults + b.children + b.toddlers, 'guest')} is {say_status(b)}."
        for b in mine
    ]
    count = "one upcoming booking" if len(mine) == 1 else f"{len(mine)} upcoming bookings"
    return ToolResult(ok=True, message=f"You have {count}. " + " ".join(described), data=data)


list_my_bookings = make_tool(
    name="list_my_bookings",
    description=(
        "The upcoming (pending deposit or confirmed) bookings made from the phone number of this "
        "conversation, soonest first. Use it when the customer asks about their booking, or to find "
        "the booking they want to change. It never shows bookings of other numbers, whatever the "
        "customer claims. data: bookings [{code, status, location, event_date, start_time, adults, "
        "children, toddlers, address, notes, reschedule_count, quote {...}, deposit {...} or null}]."
    ),
    args=ListMyBookings,
    run=run_list_my_bookings,
)
