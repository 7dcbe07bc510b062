"""Read-only tools: open places in a day, the nearest open slots, and price quotes."""

from __future__ import annotations

from datetime import datetime, time

from agent.tools.base import ToolContext, ToolResult
from agent.tools.common import (
    hhmm,
    make_tool,
    plural,
    resolve_location,
    say_date,
    say_list,
    say_money,
    say_party,
    say_time,
    say_when,
    sentence,
    slot_view,
)
from agent.tools.schemas import CheckAvailability, FindOpenSlots, GetQuote
from booking_tools.bookings import pricing
from booking_tools.bookings import service as bookings
from booking_tools.bookings.schemas import QuoteOut
from booking_tools.bookings.service import SlotState
from hibachi.db import unit_of_work

# Without a preferred time, search around the middle slot of the day.
DEFAULT_NEAR_TIME = time(15, 0)


def say_times(states: list[SlotState]) -> str:
    return say_list([say_time(s.start_time) for s in states])


async def run_check_availability(ctx: ToolContext, args: CheckAvailability) -> ToolResult:
    async with unit_of_work(ctx.app.sessions) as session:
        location = await resolve_location(session, ctx, args.location)
        states = await bookings.slot_states(
            session, location=location, first=args.event_date, last=args.event_date, now=ctx.now
        )
    day = args.event_date
    data = {
        "date": day.isoformat(),
        "location": location.slug,
        "slots": [
            {
                "start": hhmm(s.start_time),
                "remaining": s.remaining,
                "capacity": s.capacity,
                "reason": s.problem,
            }
            for s in states
        ],
    }
    open_ = [s for s in states if s.remaining > 0]
    problems = sorted({s.problem for s in states if s.problem})
    full = [s for s in states if not s.problem and s.remaining == 0]
    if not open_:
        if problems:
            message = f"{say_date(day)} can't be booked: {'; '.join(problems)}."
        else:
            message = (
                f"{say_date(day)} is fully booked. I can look for the nearest open times "
                "or put you on the waitlist."
            )
        return ToolResult(ok=True, message=message, data=data)
    first, *others = open_
    message = f"{say_when(day, first.start_time)} has {plural(first.remaining, 'opening')}"
    if others:
        message += f"; {say_times(others)} {'is' if len(others) == 1 else 'are'} open too"
    message += "."
    if full:
        message += f" {say_times(full)} {'is' if len(full) == 1 else 'are'} full."
    if problems:
        message += " " + sentence(f"other times that day can't be booked: {'; '.join(problems)}")
    return ToolResult(ok=True, message=message, data=data)


check_availability = make_tool(
    name="check_availability",
    description=(
        "How many chefs are still free in each slot (12:00, 15:00, 18:00) of one day at a location. "
        "Use it when the customer asks about a specific date, and before create_booking. "
        "It does not book or hold anything. If the day is full or too soon, use find_open_slots to "
        "suggest other times. data: date, location, slots [{start 'HH:MM', remaining, capacity, reason "
        "(why it can't be booked, or null)}]."
    ),
    args=CheckAvailability,
    run=run_check_availability,
)


async def run_find_open_slots(ctx: ToolContext, args: FindOpenSlots) -> ToolResult:
    at = time.fromisoformat(args.near_time) if args.near_time else DEFAULT_NEAR_TIME
    near = datetime.combine(args.near_date, at)
    async with unit_of_work(ctx.app.sessions) as session:
        location = await resolve_location(session, ctx, args.location)
        try:
            found = await bookings.search_open_slots(
                session, location=location, near=near, now=ctx.now, limit=args.limit
            )
        except (OverflowError, ValueError):
            found = []
    found = sorted(found, key=lambda s: (s.event_date, s.start_time))
    data = {"location": location.slug, "slots": [slot_view(s) for s in found]}
    if not found:
        return ToolResult(
            ok=True,
            message=(
                f"I couldn't find an open time within two weeks of {say_date(args.near_date)}. "
                "We book from 48 hours to 180 days ahead; I can put you on a waitlist or check another date."
            ),
            data=data,
        )
    times = say_list([say_when(s.event_date, s.start_time) for s in found])
    return ToolResult(ok=True, message=f"The nearest open times are {times}.", data=data)


find_open_slots = make_tool(
    name="find_open_slots",
    description=(
        "The open slots nearest a day (and optionally a start time) the customer wants, within two "
        "weeks either side, in date order. Use it when a day is full, too soon, or the customer is "
        "flexible. It does not book or hold anything. data: location, slots [{date 'YYYY-MM-DD', "
        "start 'HH:MM', remaining}]."
    ),
    args=FindOpenSlots,
    run=run_find_open_slots,
)


async def run_get_quote(ctx: ToolContext, args: GetQuote) -> ToolResult:
    party = pricing.Party(
        adults=args.adults,
        children=args.children,
        toddlers=args.toddlers,
        filet_upgrades=args.filet_upgrades,
        lobster_upgrades=args.lobster_upgrades,
    )
    quote = pricing.quote(party, miles=args.travel_miles)
    problem = pricing.party_problem(party)
    needs_staff = party.guests > pricing.MAX_GUESTS
    data = {
        "quote": QuoteOut.of(quote).model_dump(),
        "guests": party.guests,
        "meets_minimum": problem is None,
        "problem": problem,
        "needs_staff": needs_staff,
    }
    who = say_party(args.adults, args.children, args.toddlers)
    message = f"For {who}, the food comes to {say_money(quote.food_subtotal)}"
    if quote.travel_fee:
        message += f", travel is {say_money(quote.travel_fee)}"
    message += (
        f", and with {say_money(quote.tax)} tax the total is {say_money(quote.total)}. "
        "A $100 deposit holds the date and counts toward the bill; "
        f"a chef tip of 18 to 20 percent ({say_money(quote.gratuity_low)} to "
        f"{say_money(quote.gratuity_high)}) is suggested on the day."
    )
    if needs_staff:
        message += " Parties over 60 guests are planned by our staff; I can pass you to them."
    elif problem:
        message += " " + sentence(f"note that {problem}")
    return ToolResult(ok=True, message=message, data=data)


get_quote = make_tool(
    name="get_quote",
    description=(
        "Price a party: food (adults $55, children 3 to 12 $30, under 3 free, filet +$5, lobster "
        "+$15), 9.25% tax on food, travel ($2 a mile beyond 20 miles one way), the $100 deposit and "
        "the suggested tip. Use it whenever the customer asks what it costs; never work prices out "
        "yourself. It does not book anything or apply reward points. data: quote {food_subtotal, "
        "upgrades, discount, tax, travel_fee, total, deposit, balance_due, gratuity_suggested_low, "
        "gratuity_suggested_high} in dollars, guests, meets_minimum (10 adults or $550 food), problem "
        "(why it can't be booked as is, or null), needs_staff (over 60 guests)."
    ),
    args=GetQuote,
    run=run_get_quote,
)
