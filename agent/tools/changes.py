"""Changing an existing booking: reschedule, cancel, (re)send the deposit link.

Each needs the caller's number to be the booking's, or the booking code plus the last
name on it (see `agent.tools.identity`).
"""

from __future__ import annotations

from datetime import time

from agent.tools.base import ToolContext, ToolResult
from agent.tools.common import (
    actor,
    booking_view,
    deposit_view,
    make_tool,
    other_open_slots,
    payments,
    say_moment,
    say_status,
    say_when,
    slot_full_result,
    texts_blocked,
)
from agent.tools.identity import ACTIVE, booking_for_change, made_from_this_number
from agent.tools.schemas import CancelBooking, RescheduleBooking, SendDepositLink
from booking_tools.admin.service import audit
from booking_tools.bookings import rules
from booking_tools.bookings import service as bookings
from booking_tools.bookings.errors import InvalidTransition, SlotUnavailable
from booking_tools.bookings.models import BookingStatus
from booking_tools.bookings.notify import text_customer
from booking_tools.deposits import service as deposits
from booking_tools.deposits.models import DepositStatus
from booking_tools.messaging import templates
from hibachi.db import unit_of_work

CANCEL_REASON = "cancelled by the customer with the agent"
IDENTITY_HELP = (
    "Pass `code` if the customer gave one; omit it when they have one upcoming booking on this number. "
    "For a booking made from another phone you need both its code and the last name on it; never "
    "accept anything else as proof, and if the tool says it can't find the booking, don't hint "
    "whether the code exists."
)


def texted_to(*, owner: bool) -> str:
    return "I've texted you" if owner else "I've texted the phone number on the booking"


async def run_reschedule_booking(ctx: ToolContext, args: RescheduleBooking) -> ToolResult:
    start = time.fromisoformat(args.new_start_time)
    slug = ctx.location_slug
    try:
        async with unit_of_work(ctx.app.sessions, queue=ctx.app.queue) as session:
            booking = await booking_for_change(session, ctx, args)
            slug = booking.location.slug
            before = bookings.snapshot(booking)
            old = (booking.event_date, booking.start_time)
            was_confirmed = booking.status is BookingStatus.confirmed
            late = rules.within_48h(booking.location.timezone, *old, now=ctx.now)
            await bookings.reschedule_booking(
                session,
                booking=booking,
                event_date=args.new_date,
                start_time=start,
                payments=payments(ctx.app),
                now=ctx.now,
            )
            await audit(
                session,
                actor=actor(ctx),
                action="booking.reschedule",
                entity="booking",
                entity_id=booking.id,
                before=before,
                after=bookings.snapshot(booking),
            )
            deposit = await deposits.live_deposit(session, booking_id=booking.id)
            view = booking_view(booking, deposit)
            owner = made_from_this_number(ctx, booking)
            blocked = texts_blocked(booking.customer)
    except SlotUnavailable:
        alternatives = await other_open_slots(ctx, location_slug=slug, day=args.new_date, taken=start)
        return slot_full_result(args.new_date, start, alternatives)

    deposit_kept = late and was_confirmed
    message = (
        f"Done: booking {booking.code} is moved from {say_when(*old)} to "
        f"{say_when(booking.event_date, booking.start_time)}."
    )
    if late:
        if deposit_kept:
            message += (
                " Because the change was within 48 hours of the event, the $100 deposit you paid is "
                "kept, and a new deposit confirms the new time."
            )
        if blocked:
            message += (
                " Texts are turned off for this number, so I couldn't text the new deposit link; "
                "our staff can help."
            )
        else:
            message += f" {texted_to(owner=owner)} the new deposit link; please pay it within 24 hours."
    elif was_confirmed:
        message += " The deposit moves with it and the booking stays confirmed."
    else:
        message += " The $100 deposit link we texted still works to confirm it."
    message += " That was the one free reschedule; any further change goes through our staff."
    return ToolResult(
        ok=True,
        message=message,
        data={"booking": view, "deposit_kept": deposit_kept, "new_deposit_due": late},
    )


reschedule_booking = make_tool(
    name="reschedule_booking",
    description=(
        "Move a pending or confirmed booking to another date and start time. Each booking gets one "
        "free reschedule; after that, offer transfer_to_staff. More than 48 hours before the event the "
        "deposit moves with the booking; within 48 hours the paid deposit is kept and a new deposit "
        "link is texted. Tell the customer this and get their yes before calling. If the new slot is "
        "full it fails with error SlotUnavailable and data.alternatives (other open slots that day). "
        + IDENTITY_HELP
        + " data: booking {code, status, event_date, start_time, ...}, deposit_kept, new_deposit_due."
    ),
    args=RescheduleBooking,
    run=run_reschedule_booking,
)


async def run_cancel_booking(ctx: ToolContext, args: CancelBooking) -> ToolResult:
    async with unit_of_work(ctx.app.sessions, queue=ctx.app.queue) as session:
        booking = await booking_for_change(session, ctx, args)
        if booking.status not in ACTIVE:
            raise InvalidTransition(f"Booking {booking.code} is already {say_status(booking)}.")
        before = bookings.snapshot(booking)
        deposit = await deposits.live_deposit(session, booking_id=booking.id)
        await bookings.cancel_booking(
            session, booking=booking, payments=payments(ctx.app), now=ctx.now, reason=CANCEL_REASON
        )
        await audit(
            session,
            actor=actor(ctx),
            action="booking.cancel",
            entity="booking",
            entity_id=booking.id,
            before=before,
            after=bookings.snapshot(booking),
        )
        view = booking_view(booking, None)
    refunded = deposit is not None and deposit.status is DepositStatus.refunded
    kept = deposit is not None and deposit.status is DepositStatus.kept
    message = f"Booking {booking.code} for {say_when(booking.event_date, booking.start_time)} is cancelled."
    if refunded:
        message += " Your $100 deposit will be refunded."
    elif kept:
        message += " The $100 deposit is kept, because the event was less than 48 hours away."
    else:
        message += " No deposit had been paid, so nothing is charged."
    return ToolResult(
        ok=True,
        message=message,
        data={"booking": view, "deposit_refunded": refunded, "deposit_kept": kept},
    )


cancel_booking = make_tool(
    name="cancel_booking",
    description=(
        "Cancel a pending or confirmed booking and free its slot. More than 48 hours before the event "
        "a paid deposit is refunded; within 48 hours it is kept. Tell the customer this and get a "
        "clear yes before calling; it can't be undone (they would need to book again). "
        + IDENTITY_HELP
        + " data: booking {code, status, event_date, start_time, ...}, deposit_refunded, deposit_kept."
    ),
    args=CancelBooking,
    run=run_cancel_booking,
)


async def run_send_deposit_link(ctx: ToolContext, args: SendDepositLink) -> ToolResult:
    async with unit_of_work(ctx.app.sessions, queue=ctx.app.queue) as session:
        booking = await booking_for_change(session, ctx, args)
        if booking.status is not BookingStatus.pending_deposit:
            deposit = await deposits.live_deposit(session, booking_id=booking.id)
            return ToolResult(
                ok=False,
                message=f"Booking {booking.code} is {say_status(booking)}, so no deposit is due.",
                data={
                    "booking": booking_view(booking, deposit),
                    "deposit": deposit_view(deposit),
                    "texted": False,
                },
                error="NoDepositDue",
            )
        deposit, created = await deposits.open_deposit(
            session, booking=booking, payments=payments(ctx.app), now=ctx.now
        )
        if deposit.expires_at <= ctx.now:
            return ToolResult(
                ok=False,
                message=(
                    f"The deposit link for booking {booking.code} has expired, so the slot is being "
                    "released. I can make a new booking if the time is still open."
                ),
                data={
                    "booking": booking_view(booking, deposit),
                    "deposit": deposit_view(deposit),
                    "texted": False,
                },
                error="DepositExpired",
            )
        if created:
            await deposits.send_deposit_link(session, booking=booking, deposit=deposit)
        else:
            # The first text of this link is de-duplicated; a resend is allowed once per conversation.
            await text_customer(
                session,
                booking=booking,
                template="deposit_link",
                body=templates.deposit_link(
                    code=booking.code,
                    event_date=booking.event_date,
                    start_time=booking.start_time,
                    url=deposit.payment_url,
                ),
                dedupe_key=f"deposit_link:{deposit.id}:{ctx.conversation_id}",
            )
        texted = not texts_blocked(booking.customer)
        owner = made_from_this_number(ctx, booking)
        until = say_moment(deposit.expires_at, booking.location.timezone)
        view = booking_view(booking, deposit)
    if texted:
        message = (
            f"{texted_to(owner=owner)} the link for the $100 deposit on booking {booking.code}. "
            f"It works until {until}; the booking is confirmed once it's paid."
        )
    else:
        message = (
            "Texts are turned off for the number on this booking, so I couldn't send the link. Replying "
            "START turns them back on, or our staff can help."
        )
    return ToolResult(
        ok=texted,
        message=message,
        data={"booking": view, "deposit": deposit_view(deposit), "texted": texted},
        error=None if texted else "TextsBlocked",
    )


send_deposit_link = make_tool(
    name="send_deposit_link",
    description=(
        "Text the secure $100 deposit payment link for a booking still waiting for its deposit (again, "
        "if the customer lost it). The link goes to the phone number on the booking. Payments are made "
        "only through this link: never take card numbers. "
        + IDENTITY_HELP
        + " data: booking {...}, deposit {amount, status, payment_url, expires_at}, texted."
    ),
    args=SendDepositLink,
    run=run_send_deposit_link,
)
