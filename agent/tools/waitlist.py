"""Joining the waitlist of a full slot."""

from __future__ import annotations

from datetime import time

from agent.tools.base import ToolContext, ToolResult
from agent.tools.common import actor, hhmm, make_tool, redact_cards, resolve_location, say_when, texts_blocked
from agent.tools.identity import require_caller_phone
from agent.tools.schemas import JoinWaitlist
from booking_tools.admin.service import audit
from booking_tools.bookings import rules
from booking_tools.bookings.errors import BookingRuleViolation
from booking_tools.customers.service import get_or_create_customer
from booking_tools.waitlist import service as waitlist
from hibachi.db import unit_of_work


async def run_join_waitlist(ctx: ToolContext, args: JoinWaitlist) -> ToolResult:
    phone = require_caller_phone(ctx)
    start = time.fromisoformat(args.start_time)
    when = say_when(args.event_date, start)
    async with unit_of_work(ctx.app.sessions, queue=ctx.app.queue) as session:
        location = await resolve_location(session, ctx, args.location)
        problem = rules.slot_problem(location.timezone, args.event_date, start, now=ctx.now)
        if problem:
            raise BookingRuleViolation(f"I can't add you to the waitlist for {when}: {problem}.")
        customer = await get_or_create_customer(session, phone=phone, name=redact_cards(args.customer_name))
        try:
            entry, created = await waitlist.join_waitlist(
                session,
                location=location,
                customer=customer,
                event_date=args.event_date,
                start_time=start,
                party_size=args.party_size,
            )
        except waitlist.SlotHasRoom:
            return ToolResult(
                ok=False,
                message=f"{when} still has an opening, so I can book it for you instead of the waitlist.",
                data={"date": args.event_date.isoformat(), "start": hhmm(start), "location": location.slug},
                error="SlotHasRoom",
            )
        if created:
            await audit(
                session, actor=actor(ctx), action="waitlist.join", entity="waitlist", entity_id=entry.id
            )
        blocked = texts_blocked(customer)
    data = {
        "entry": {
            "id": str(entry.id),
            "location": location.slug,
            "event_date": entry.event_date.isoformat(),
            "start_time": hhmm(entry.start_time),
            "party_size": entry.party_size,
            "status": entry.status.value,
        },
        "created": created,
        "will_be_texted": not blocked,
    }
    message = (
        f"You're on the waitlist for {when}." if created else f"You're already on the waitlist for {when}."
    )
    if blocked:
        message += (
            " Texts are turned off for this number, so we can't text you if a place opens; "
            "replying START turns them back on."
        )
    else:
        message += " If a chef frees up, we'll text you so you can book it."
    return ToolResult(ok=True, message=message, data=data)


join_waitlist = make_tool(
    name="join_waitlist",
    description=(
        "Put the customer on this phone number on the waitlist of a full slot. Use it only after "
        "offering the other open slots that day. When a place frees up, waitlisted customers are "
        "texted in order (gold and platinum members first); it does not hold or book anything. It "
        "fails with error SlotHasRoom when the slot can simply be booked. data: entry {id, location, "
        "event_date, start_time, party_size, status}, created, will_be_texted."
    ),
    args=JoinWaitlist,
    run=run_join_waitlist,
)
