from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from booking_tools.admin.service import audit
from booking_tools.bookings import pricing, service
from booking_tools.bookings.models import Booking, BookingStatus
from booking_tools.bookings.schemas import (
    AvailabilityOut,
    BookingCreate,
    BookingList,
    BookingOut,
    Cancel,
    DepositOut,
    OpenSlot,
    QuoteOut,
    QuoteRequest,
    Redeem,
    Reschedule,
    SearchOut,
    SlotOut,
    dollars,
)
from booking_tools.bookings.service import snapshot
from booking_tools.deposits import service as deposits
from booking_tools.deposits.models import Deposit
from booking_tools.locations.service import get_location
from booking_tools.loyalty import service as loyalty
from hibachi.deps import AnyRole, CtxDep, NowDep, SessionDep, StaffRole
from hibachi.errors import RuleViolation

router = APIRouter(prefix="/v1", tags=["bookings"])


def deposit_out(deposit: Deposit | None) -> DepositOut | None:
    if deposit is None:
        return None
    return DepositOut(
        id=deposit.id,
        amount=dollars(deposit.amount_cents),
        status=deposit.status.value,
        payment_url=deposit.payment_url,
        expires_at=deposit.expires_at,
        paid_at=deposit.paid_at,
    )


async def booking_out(session: SessionDep, booking: Booking) -> BookingOut:
    """The API view of a booking, with its live deposit (if any)."""
    return booking_view(booking, await deposits.live_deposit(session, booking_id=booking.id))


def booking_view(booking: Booking, deposit: Deposit | None) -> BookingOut:
    return BookingOut(
        id=booking.id,
        code=booking.code,
        status=booking.status.value,
        location=booking.location.slug,
        customer_phone=booking.customer.phone,
        customer_name=booking.customer_name,
        event_date=booking.event_date,
        start_time=booking.start_time,
        adults=booking.adults,
        children=booking.children,
        toddlers=booking.toddlers,
        filet_upgrades=booking.filet_upgrades,
        lobster_upgrades=booking.lobster_upgrades,
        travel_miles=booking.travel_miles,
        address=booking.address,
        notes=booking.notes,
        points_redeemed=booking.points_redeemed,
        reschedule_count=booking.reschedule_count,
        quote=QuoteOut.of(service.quote_of(booking)),
        deposit=deposit_out(deposit),
        created_at=booking.created_at,
        cancelled_at=booking.cancelled_at,
        cancel_reason=booking.cancel_reason,
    )


@router.get("/availability", response_model=AvailabilityOut, tags=["availability"])
async def availability(
    session: SessionDep,
    _: AnyRole,
    now: NowDep,
    location: Annotated[str, Query(max_length=40, examples=["bay-area"])],
    date: Annotated[date, Query(examples=["2026-12-05"])],
) -> AvailabilityOut:
    loc = await get_location(session, slug=location)
    states = await service.slot_states(session, location=loc, first=date, last=date, now=now)
    return AvailabilityOut(
        location=loc.slug,
        date=date,
        slots=[
            SlotOut(start=s.start_time, remaining=s.remaining, capacity=s.capacity, reason=s.problem)
            for s in states
        ],
    )


@router.get("/availability/search", response_model=SearchOut, tags=["availability"])
async def search_availability(
    session: SessionDep,
    _: AnyRole,
    now: NowDep,
    location: Annotated[str, Query(max_length=40)],
    near: Annotated[datetime, Query(description="local date-time wanted, e.g. 2026-12-05T18:00")],
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> SearchOut:
    """The open slots nearest to a wanted time ("next open slots near Saturday 6 pm")."""
    loc = await get_location(session, slug=location)
    try:
        found = await service.search_open_slots(session, location=loc, near=near, now=now, limit=limit)
    except (OverflowError, ValueError) as exc:
        raise RuleViolation("'near' is outside the calendar we can search") from exc
    return SearchOut(
        location=loc.slug,
        near=near,
        items=[OpenSlot(date=s.event_date, start=s.start_time, remaining=s.remaining) for s in found],
    )


@router.post("/quotes", response_model=QuoteOut, tags=["bookings"])
async def quote(data: QuoteRequest, _: AnyRole) -> QuoteOut:
    """Price a party: food subtotal, upgrades, points discount, tax, travel, deposit, balance."""
    party = data.party()
    subtotal = pricing.food_subtotal(party)
    if data.points > pricing.max_redeemable_points(subtotal):
        raise RuleViolation(
            f"at most {pricing.max_redeemable_points(subtotal)} points can be used on this party"
        )
    return QuoteOut.of(
        pricing.quote(party, miles=data.travel_miles, discount=pricing.redeem_value(data.points))
    )


@router.post("/bookings", response_model=BookingOut, status_code=201)
async def create_booking(
    data: BookingCreate,
    session: SessionDep,
    ctx: CtxDep,
    who: StaffRole,
    now: NowDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
) -> BookingOut:
    """Hold a slot (409 `SlotUnavailable` when full), open the $100 deposit and text its link."""
    new = await service.create_booking_with_deposit(
        session,
        booking_in=data,
        payments=ctx.extras["payments"],
        now=now,
        idempotency_key=idempotency_key,
        actor=who.actor,  # audited with the booking
    )
    if not new.created:
        response.status_code = 200
    return booking_view(new.booking, new.deposit)


@router.get("/bookings", response_model=BookingList)
async def list_bookings(
    session: SessionDep,
    _: AnyRole,
    phone: Annotated[str | None, Query(max_length=40)] = None,
    status: BookingStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> BookingList:
    rows, total = await service.list_bookings(session, phone=phone, status=status, limit=limit, offset=offset)
    live = await deposits.live_deposits(session, booking_ids=[b.id for b in rows])
    return BookingList(
        items=[booking_view(b, live.get(b.id)) for b in rows], total=total, limit=limit, offset=offset
    )


@router.get("/bookings/by-code/{code}", response_model=BookingOut)
async def get_booking_by_code(code: str, session: SessionDep, _: AnyRole) -> BookingOut:
    return await booking_out(session, await service.booking_by_code(session, code=code))


@router.get("/bookings/{booking_id}", response_model=BookingOut)
async def get_booking(booking_id: uuid.UUID, session: SessionDep, _: AnyRole) -> BookingOut:
    return await booking_out(session, await service.load_booking(session, booking_id=booking_id))


@router.post("/bookings/{booking_id}/reschedule", response_model=BookingOut)
async def reschedule(
    booking_id: uuid.UUID, data: Reschedule, session: SessionDep, ctx: CtxDep, who: StaffRole, now: NowDep
) -> BookingOut:
    """Move to another slot; outside 48 h the deposit moves, inside it is kept (one free move)."""
    booking = await service.load_booking(session, booking_id=booking_id, lock=True)
    before = snapshot(booking)
    await service.reschedule_booking(
        session,
        booking=booking,
        event_date=data.event_date,
        start_time=data.start_time,
        payments=ctx.extras["payments"],
        now=now,
    )
    await audit(
        session,
        actor=who.actor,
        action="booking.reschedule",
        entity="booking",
        entity_id=booking.id,
        before=before,
        after=snapshot(booking),
    )
    return await booking_out(session, booking)


@router.post("/bookings/{booking_id}/cancel", response_model=BookingOut)
async def cancel(
    booking_id: uuid.UUID, data: Cancel, session: SessionDep, ctx: CtxDep, who: StaffRole, now: NowDep
) -> BookingOut:
    """Cancel; a paid deposit is refunded more than 48 h before the event and kept inside 48 h."""
    booking = await service.load_booking(session, booking_id=booking_id, lock=True)
    before = snapshot(booking)
    await service.cancel_booking(
        session, booking=booking, payments=ctx.extras["payments"], now=now, reason=data.reason
    )
    await audit(
        session,
        actor=who.actor,
        action="booking.cancel",
        entity="booking",
        entity_id=booking.id,
        before=before,
        after=snapshot(booking),
    )
    return await booking_out(session, booking)


@router.post("/bookings/{booking_id}/complete", response_model=BookingOut)
async def complete(booking_id: uuid.UUID, session: SessionDep, who: StaffRole, now: NowDep) -> BookingOut:
    """Mark an event done (after it started); awards loyalty points."""
    booking = await service.load_booking(session, booking_id=booking_id, lock=True)
    before = snapshot(booking)
    await service.complete_booking(session, booking=booking, now=now)
    await audit(
        session,
        actor=who.actor,
        action="booking.complete",
        entity="booking",
        entity_id=booking.id,
        before=before,
        after=snapshot(booking),
    )
    return await booking_out(session, booking)


@router.post("/bookings/{booking_id}/deposit", response_model=DepositOut)
async def open_deposit(
    booking_id: uuid.UUID, session: SessionDep, ctx: CtxDep, _: StaffRole, now: NowDep, response: Response
) -> DepositOut:
    """The booking's live deposit, created (and its link texted) if there is none. Idempotent."""
    booking = await service.load_booking(session, booking_id=booking_id, lock=True)
    deposit, created = await deposits.open_deposit(
        session, booking=booking, payments=ctx.extras["payments"], now=now
    )
    if created:
        await deposits.send_deposit_link(session, booking=booking, deposit=deposit)
        response.status_code = 201
    out = deposit_out(deposit)
    assert out is not None
    return out


@router.post("/bookings/{booking_id}/redeem", response_model=BookingOut)
async def redeem(
    booking_id: uuid.UUID, data: Redeem, session: SessionDep, who: StaffRole, now: NowDep
) -> BookingOut:
    """Use loyalty points on a booking: 100 points = $10 off the food, up to half of it."""
    booking = await service.load_booking(session, booking_id=booking_id, lock=True)
    before = snapshot(booking)
    await loyalty.redeem_on_booking(session, booking=booking, points=data.points, actor=who.actor, now=now)
    await audit(
        session,
        actor=who.actor,
        action="booking.redeem",
        entity="booking",
        entity_id=booking.id,
        before=before,
        after=snapshot(booking),
    )
    return await booking_out(session, booking)
