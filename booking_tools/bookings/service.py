"""Bookings: availability, quotes, create/reschedule/cancel/complete under the house rules.

Capacity is enforced with a PostgreSQL transaction-scoped advisory lock per slot:
every writer that could take a place in a slot serialises on that slot's lock, counts
the bookings holding it, and only then inserts. A full slot is never overbooked.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from booking_tools.admin.service import audit_values
from booking_tools.bookings import pricing, rules
from booking_tools.bookings import statements as sql
from booking_tools.bookings.errors import (
    BookingNotFound,
    BookingRuleViolation,
    InvalidTransition,
    NotYourBooking,
    SlotUnavailable,
)
from booking_tools.bookings.models import HOLDS_SLOT, Booking, BookingStatus
from booking_tools.bookings.notify import text_customer
from booking_tools.bookings.schemas import BookingCreate
from booking_tools.customers.models import Customer
from booking_tools.customers.phone import InvalidPhone, to_e164
from booking_tools.customers.service import find_customer
from booking_tools.deposits import service as deposits
from booking_tools.deposits.models import Deposit, DepositStatus
from booking_tools.deposits.providers import PaymentProvider
from booking_tools.locations.models import Location
from booking_tools.locations.service import get_location
from booking_tools.loyalty import service as loyalty
from booking_tools.messaging import templates
from booking_tools.waitlist import service as waitlist
from hibachi.db import attach_as_loaded

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@dataclass(frozen=True, slots=True)
class SlotState:
    event_date: date
    start_time: time
    capacity: int
    held: int
    problem: str | None

    @property
    def remaining(self) -> int:
        return 0 if self.problem else max(0, self.capacity - self.held)


def new_code() -> str:
    return "MH" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))


def party_of(booking: Booking) -> pricing.Party:
    return pricing.Party(
        adults=booking.adults,
        children=booking.children,
        toddlers=booking.toddlers,
        filet_upgrades=booking.filet_upgrades,
        lobster_upgrades=booking.lobster_upgrades,
    )


def quote_of(booking: Booking) -> pricing.Quote:
    return pricing.quote(
        party_of(booking),
        miles=booking.travel_miles,
        discount=booking.discount_cents + booking.referral_discount_cents,
    )


def slot_lock_key(location_id: uuid.UUID, day: date, at: time) -> int:
    digest = hashlib.blake2b(f"{location_id}|{day}|{at}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_slot(session: AsyncSession, *, location_id: uuid.UUID, day: date, at: time) -> None:
    """Serialise writers of one slot until the transaction ends."""
    await session.execute(sql.SLOT_LOCK, {"key": slot_lock_key(location_id, day, at)})


async def held_counts(
    session: AsyncSession, *, location_id: uuid.UUID, first: date, last: date
) -> Counter[tuple[date, time]]:
    rows = await session.execute(
        select(Booking.event_date, Booking.start_time, func.count())
        .where(
            Booking.location_id == location_id,
            Booking.event_date.between(first, last),
            Booking.status.in_(HOLDS_SLOT),
        )
        .group_by(Booking.event_date, Booking.start_time)
    )
    return Counter({(d, t): n for d, t, n in rows})


async def slot_states(
    session: AsyncSession, *, location: Location, first: date, last: date, now: datetime
) -> list[SlotState]:
    held = await held_counts(session, location_id=location.id, first=first, last=last)
    states = []
    day = first
    while day <= last:
        for at in rules.SLOT_TIMES:
            states.append(
                SlotState(
                    event_date=day,
                    start_time=at,
                    capacity=location.chefs,
                    held=held[(day, at)],
                    problem=rules.slot_problem(location.timezone, day, at, now=now),
                )
            )
        day += timedelta(days=1)
    return states


async def search_open_slots(
    session: AsyncSession, *, location: Location, near: datetime, now: datetime, limit: int, days: int = 14
) -> list[SlotState]:
    """Open slots closest in time to `near` (within +-`days`), nearest first."""
    center = near if near.tzinfo else near.replace(tzinfo=ZoneInfo(location.timezone))
    states = await slot_states(
        session,
        location=location,
        first=center.date() - timedelta(days=days),
        last=center.date() + timedelta(days=days),
        now=now,
    )
    open_ = [s for s in states if s.remaining > 0]
    open_.sort(
        key=lambda s: abs(
            (rules.event_start(location.timezone, s.event_date, s.start_time) - center).total_seconds()
        )
    )
    return open_[:limit]


async def load_booking(session: AsyncSession, *, booking_id: uuid.UUID, lock: bool = False) -> Booking:
    query = (
        select(Booking)
        .where(Booking.id == booking_id)
        .options(selectinload(Booking.location), selectinload(Booking.customer))
    )
    if lock:
        query = query.with_for_update(of=Booking)
    booking = await session.scalar(query)
    if booking is None:
        raise BookingNotFound("no such booking")
    return booking


async def booking_by_code(session: AsyncSession, *, code: str) -> Booking:
    booking_id = await session.scalar(select(Booking.id).where(Booking.code == code.upper().strip()))
    if booking_id is None:
        raise BookingNotFound(f"no booking with code {code}")
    return await load_booking(session, booking_id=booking_id)


async def list_bookings(
    session: AsyncSession, *, phone: str | None, status: BookingStatus | None, limit: int, offset: int
) -> tuple[list[Booking], int]:
    query = select(Booking).options(selectinload(Booking.location), selectinload(Booking.customer))
    if phone is not None:
        customer = await find_customer(session, phone=phone)
        if customer is None:
            return [], 0
        query = query.where(Booking.customer_id == customer.id)
    if status is not None:
        query = query.where(Booking.status == status)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(Booking.event_date, Booking.start_time, Booking.id).limit(limit).offset(offset)
    )
    return list(rows), total


def authorize_change(
    booking: Booking, *, phone: str | None = None, code: str | None = None, last_name: str | None = None
) -> None:
    """A change needs the booking's phone, or its code plus the last name on it."""
    if phone is not None and to_e164(phone) == booking.customer.phone:
        return
    if code and last_name and code.strip().upper() == booking.code:
        on_booking = booking.customer_name.strip().split()[-1].lower()
        if last_name.strip().lower() == on_booking:
            return
    raise NotYourBooking("that booking can only be changed from the phone it was made with")


async def _take_place(
    session: AsyncSession, *, location: Location, day: date, at: time, now: datetime
) -> None:
    """Check the slot's rules and capacity with its lock held (call before inserting/moving)."""
    problem = rules.slot_problem(location.timezone, day, at, now=now)
    if problem:
        raise BookingRuleViolation(problem)
    await lock_slot(session, location_id=location.id, day=day, at=at)
    held = await held_counts(session, location_id=location.id, first=day, last=day)
    if held[(day, at)] >= location.chefs:
        raise SlotUnavailable(_full(location, day, at))


def _full(location: Location, day: date, at: time) -> str:
    return f"{location.name} is fully booked on {day:%a %b} {day.day} at {at:%H:%M}"


def _location_of(session: AsyncSession, row: Row[Any]) -> Location:
    """The row's location: the session's copy if it has one (locations don't change)."""
    known = session.identity_map.get(identity_key(Location, row.location_id))
    if isinstance(known, Location):
        return known
    return attach_as_loaded(
        session, Location(**{c.key: getattr(row, f"location_{c.key}") for c in sql.locations.c})
    )


def _customer_of(session: AsyncSession, row: Row[Any]) -> Customer:
    """The upserted customer as a persistent object (refreshing the session's copy, if any)."""
    values = {c.key: getattr(row, c.key) for c in sql.customers.c}
    known = session.identity_map.get(identity_key(Customer, row.id))
    if isinstance(known, Customer):
        for key, value in values.items():
            set_committed_value(known, key, value)
        return known
    return attach_as_loaded(session, Customer(**values))


@dataclass(frozen=True, slots=True)
class NewBooking:
    booking: Booking
    deposit: Deposit | None  # the live deposit (None only if a replayed booking has none left)
    created: bool  # False when an idempotency key replayed an earlier booking


async def create_booking(
    session: AsyncSession,
    *,
    booking_in: BookingCreate,
    payments: PaymentProvider,
    now: datetime,
    idempotency_key: str | None = None,
    actor: str | None = None,
) -> tuple[Booking, bool]:
    """Hold a place, open the deposit and text its link. Returns (booking, created)."""
    new = await create_booking_with_deposit(
        session,
        booking_in=booking_in,
        payments=payments,
        now=now,
        idempotency_key=idempotency_key,
        actor=actor,
    )
    return new.booking, new.created


async def create_booking_with_deposit(
    session: AsyncSession,
    *,
    booking_in: BookingCreate,
    payments: PaymentProvider,
    now: datetime,
    idempotency_key: str | None = None,
    actor: str | None = None,
) -> NewBooking:
    """Hold a place, open the deposit and text its link; also returns the deposit.

    With `actor`, the `booking.create` audit line is written with the deposit. The
    writes are pre-built Core statements (see `statements.py`): four round trips for
    an ordinary booking. The booking and deposit are attached to the session as if
    loaded, so later changes to them in the transaction are flushed as usual.
    """
    if idempotency_key:
        existing = await session.scalar(sql.IDEMPOTENT_REPLAY, {"key": idempotency_key})
        if existing is not None:
            booking = await load_booking(session, booking_id=existing)
            return NewBooking(booking, await deposits.live_deposit(session, booking_id=booking.id), False)
    party = booking_in.party()
    try:
        phone = to_e164(booking_in.customer_phone)
    except InvalidPhone:
        phone = None
    problem = pricing.party_problem(party)
    if problem or phone is None:
        await get_location(session, slug=booking_in.location)  # an unknown location is reported first
        if problem:
            raise BookingRuleViolation(problem)
        to_e164(booking_in.customer_phone)  # raises InvalidPhone
    conn = await session.connection()
    row = (
        await conn.execute(
            sql.CUSTOMER_AND_LOCATION,
            {
                "customer_id": uuid.uuid4(),
                "phone": phone,
                "name": booking_in.customer_name,
                "slug": booking_in.location,
            },
        )
    ).one()
    if row.location_id is None:
        await get_location(session, slug=booking_in.location)  # raises LocationNotFound
    location, customer = _location_of(session, row), _customer_of(session, row)
    if booking_in.referrer_phone:
        await loyalty.record_referral(session, customer=customer, referrer_phone=booking_in.referrer_phone)
    day, at = booking_in.event_date, booking_in.start_time
    problem = rules.slot_problem(location.timezone, day, at, now=now)
    if problem:
        raise BookingRuleViolation(problem)
    await conn.execute(sql.SLOT_LOCK, {"key": slot_lock_key(location.id, day, at)})
    food = pricing.food_subtotal(party)
    referral_discount = await loyalty.first_event_referral_discount(
        session, customer=customer, food_subtotal_cents=food
    )
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "code": new_code(),
        "location_id": location.id,
        "customer_id": customer.id,
        "customer_name": booking_in.customer_name.strip(),
        "event_date": day,
        "start_time": at,
        "adults": party.adults,
        "children": party.children,
        "toddlers": party.toddlers,
        "filet_upgrades": party.filet_upgrades,
        "lobster_upgrades": party.lobster_upgrades,
        "travel_miles": booking_in.travel_miles,
        "address": booking_in.address,
        "notes": booking_in.notes,
        "status": BookingStatus.pending_deposit,
        "food_subtotal_cents": food,
        "discount_cents": 0,
        "points_redeemed": 0,
        "referral_discount_cents": referral_discount,
        "reschedule_count": 0,
        "idempotency_key": idempotency_key,
        "cancelled_at": None,
        "cancel_reason": None,
        "confirmed_at": None,
        "completed_at": None,
    }
    created_at = (
        await conn.execute(sql.INSERT_BOOKING_IF_ROOM, {**values, "capacity": location.chefs})
    ).scalar()
    if created_at is None:
        raise SlotUnavailable(_full(location, day, at))
    booking = attach_as_loaded(session, Booking(**values, created_at=created_at))
    set_committed_value(booking, "location", location)
    set_committed_value(booking, "customer", customer)
    deposit = await deposits.open_first_deposit(
        session,
        booking=booking,
        payments=payments,
        now=now,
        audit_line=None
        if actor is None
        else audit_values(
            actor=actor,
            action="booking.create",
            entity="booking",
            entity_id=booking.id,
            after=snapshot(booking),
        ),
    )
    return NewBooking(booking, deposit, True)


def snapshot(booking: Booking) -> dict[str, object]:
    """The audited fields of a booking."""
    return {
        "status": booking.status.value,
        "event_date": booking.event_date.isoformat(),
        "start_time": booking.start_time.strftime("%H:%M"),
        "adults": booking.adults,
        "children": booking.children,
        "points_redeemed": booking.points_redeemed,
    }


async def reschedule_booking(
    session: AsyncSession,
    *,
    booking: Booking,
    event_date: date,
    start_time: time,
    payments: PaymentProvider,
    now: datetime,
    by_staff: bool = False,
) -> Booking:
    """Move a booking. Outside 48 h the deposit moves with it; inside, it is kept and a new one is due.

    Customers get one free reschedule; staff may move a booking again.
    """
    if booking.status not in (BookingStatus.pending_deposit, BookingStatus.confirmed):
        raise InvalidTransition(f"booking {booking.code} is {booking.status.value} and can't be moved")
    if booking.reschedule_count >= 1 and not by_staff:
        raise BookingRuleViolation(
            "a booking can be rescheduled once for free; our staff can help with another change"
        )
    if (event_date, start_time) == (booking.event_date, booking.start_time):
        raise BookingRuleViolation("that is already the booking's date and time")
    location = booking.location
    old = (booking.event_date, booking.start_time)
    late = rules.within_48h(location.timezone, *old, now=now)
    await _take_place(session, location=location, day=event_date, at=start_time, now=now)
    booking.event_date, booking.start_time = event_date, start_time
    booking.reschedule_count += 1
    if late:
        kept = await deposits.settle_on_cancel(
            session, booking=booking, keep=True, payments=payments, now=now
        )
        if kept is not None and kept.status is DepositStatus.kept:
            booking.status = BookingStatus.pending_deposit
            booking.confirmed_at = None
        deposit, created = await deposits.open_deposit(session, booking=booking, payments=payments, now=now)
        if created:
            await deposits.send_deposit_link(session, booking=booking, deposit=deposit)
    await text_customer(
        session,
        booking=booking,
        template="booking_rescheduled",
        body=templates.booking_rescheduled(code=booking.code, event_date=event_date, start_time=start_time),
        dedupe_key=f"rescheduled:{booking.id}:{booking.reschedule_count}",
    )
    await session.flush()
    await waitlist.slot_freed(session, location=location, event_date=old[0], start_time=old[1], now=now)
    return booking


async def cancel_booking(
    session: AsyncSession,
    *,
    booking: Booking,
    payments: PaymentProvider,
    now: datetime,
    reason: str | None = None,
    released: bool = False,
) -> Booking:
    """Cancel; a paid deposit is refunded outside 48 h and kept inside. Frees the slot."""
    if booking.status not in (BookingStatus.pending_deposit, BookingStatus.confirmed):
        raise InvalidTransition(f"booking {booking.code} is {booking.status.value} and can't be cancelled")
    location = booking.location
    late = rules.within_48h(location.timezone, booking.event_date, booking.start_time, now=now)
    deposit = await deposits.settle_on_cancel(session, booking=booking, keep=late, payments=payments, now=now)
    booking.status = BookingStatus.cancelled
    booking.cancelled_at = now
    booking.cancel_reason = reason or ("deposit not paid within 24 hours" if released else "cancelled")
    await loyalty.return_redeemed_points(session, booking=booking, now=now)
    if released:
        body = templates.booking_released(code=booking.code)
    else:
        refund = deposit is not None and deposit.status is DepositStatus.refunded
        body = templates.booking_cancelled(code=booking.code, refund=refund)
    await text_customer(
        session,
        booking=booking,
        template="booking_released" if released else "booking_cancelled",
        body=body,
        dedupe_key=f"cancelled:{booking.id}",
    )
    await session.flush()
    await waitlist.slot_freed(
        session, location=location, event_date=booking.event_date, start_time=booking.start_time, now=now
    )
    return booking


async def complete_booking(session: AsyncSession, *, booking: Booking, now: datetime) -> Booking:
    """The event happened: mark it completed and award loyalty points (and referral bonus)."""
    if booking.status is not BookingStatus.confirmed:
        raise InvalidTransition(
            f"only confirmed bookings can be completed (this one is {booking.status.value})"
        )
    if rules.event_start(booking.location.timezone, booking.event_date, booking.start_time) > now:
        raise BookingRuleViolation("an event can't be completed before it starts")
    booking.status = BookingStatus.completed
    booking.completed_at = now
    await session.flush()
    await loyalty.award_for_completed_booking(session, booking=booking, now=now)
    return booking


async def release_expired_deposits(session: AsyncSession, *, payments: PaymentProvider, now: datetime) -> int:
    """Cancel bookings whose deposit link expired unpaid; returns how many were released."""
    released = 0
    for deposit in await deposits.due_for_expiry(session, now=now):
        deposit.status = DepositStatus.expired
        deposit.closed_at = now
        await session.flush()  # no longer live: cancel_booking must not settle (refund) it
        booking = await load_booking(session, booking_id=deposit.booking_id, lock=True)
        if booking.status is BookingStatus.pending_deposit:
            await cancel_booking(session, booking=booking, payments=payments, now=now, released=True)
            released += 1
    return released
