"""Waitlist: join a full slot; when a place frees, text waiting customers in priority order."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.bookings.models import HOLDS_SLOT, Booking
from booking_tools.customers.models import Customer
from booking_tools.locations.models import Location
from booking_tools.loyalty.models import LoyaltyAccount, Tier
from booking_tools.messaging import templates
from booking_tools.messaging.service import queue_text
from booking_tools.waitlist.models import WaitlistEntry, WaitlistStatus
from hibachi.errors import Conflict, NotFound

NOTICE_WINDOW = timedelta(hours=24)


class SlotHasRoom(Conflict):
    pass


class WaitlistEntryNotFound(NotFound):
    pass


async def _held(session: AsyncSession, *, location: Location, event_date: date, start_time: time) -> int:
    return (
        await session.scalar(
            select(func.count()).where(
                Booking.location_id == location.id,
                Booking.event_date == event_date,
                Booking.start_time == start_time,
                Booking.status.in_(HOLDS_SLOT),
            )
        )
        or 0
    )


async def _waiting_entry(
    session: AsyncSession, *, location: Location, customer: Customer, event_date: date, start_time: time
) -> WaitlistEntry | None:
    return await session.scalar(
        select(WaitlistEntry).where(
            WaitlistEntry.location_id == location.id,
            WaitlistEntry.customer_id == customer.id,
            WaitlistEntry.event_date == event_date,
            WaitlistEntry.start_time == start_time,
            WaitlistEntry.status == WaitlistStatus.waiting,
        )
    )


async def join_waitlist(
    session: AsyncSession,
    *,
    location: Location,
    customer: Customer,
    event_date: date,
    start_time: time,
    party_size: int,
) -> tuple[WaitlistEntry, bool]:
    """Join the waitlist of a full slot; joining twice returns the first entry."""
    existing = await _waiting_entry(
        session, location=location, customer=customer, event_date=event_date, start_time=start_time
    )
    if existing is not None:
        return existing, False
    if await _held(session, location=location, event_date=event_date, start_time=start_time) < location.chefs:
        raise SlotHasRoom("that slot still has room: book it instead of joining the waitlist")
    inserted = await session.scalar(
        insert(WaitlistEntry)
        .values(
            id=uuid.uuid4(),
            location_id=location.id,
            customer_id=customer.id,
            event_date=event_date,
            start_time=start_time,
            party_size=party_size,
            status=WaitlistStatus.waiting,
        )
        .on_conflict_do_nothing(
            index_elements=["location_id", "customer_id", "event_date", "start_time"],
            index_where=WaitlistEntry.status == WaitlistStatus.waiting,
        )
        .returning(WaitlistEntry.id)
    )
    entry = await _waiting_entry(
        session, location=location, customer=customer, event_date=event_date, start_time=start_time
    )
    assert entry is not None  # inserted now or by a concurrent join
    return entry, inserted is not None


PRIORITY = case(
    (LoyaltyAccount.tier.in_([Tier.gold, Tier.platinum]), 0),
    else_=1,
)


async def waiting_in_order(
    session: AsyncSession, *, location: Location, event_date: date, start_time: time
) -> list[tuple[WaitlistEntry, Customer]]:
    """Waiting entries for a slot: gold and platinum members first, then first come."""
    rows = await session.execute(
        select(WaitlistEntry, Customer)
        .join(Customer, Customer.id == WaitlistEntry.customer_id)
        .outerjoin(LoyaltyAccount, LoyaltyAccount.customer_id == WaitlistEntry.customer_id)
        .where(
            WaitlistEntry.location_id == location.id,
            WaitlistEntry.event_date == event_date,
            WaitlistEntry.start_time == start_time,
            WaitlistEntry.status == WaitlistStatus.waiting,
        )
        .order_by(PRIORITY, WaitlistEntry.created_at, WaitlistEntry.id)
        .with_for_update(of=WaitlistEntry, skip_locked=True)
    )
    return [(entry, customer) for entry, customer in rows]


async def slot_freed(
    session: AsyncSession, *, location: Location, event_date: date, start_time: time, now: datetime
) -> list[WaitlistEntry]:
    """A place opened: text as many waiting customers as there are free places, in order."""
    free = location.chefs - await _held(
        session, location=location, event_date=event_date, start_time=start_time
    )
    if free <= 0:
        return []
    notified = []
    for entry, customer in (
        await waiting_in_order(session, location=location, event_date=event_date, start_time=start_time)
    )[:free]:
        entry.status = WaitlistStatus.notified
        entry.notified_at = now
        await queue_text(
            session,
            location=location,
            to_phone=customer.phone,
            customer=customer,
            template="waitlist_open",
            body=templates.waitlist_open(
                location=location.name, event_date=event_date, start_time=start_time
            ),
            dedupe_key=f"waitlist:{entry.id}",
        )
        notified.append(entry)
    await session.flush()
    return notified


async def list_entries(
    session: AsyncSession, *, location: Location | None, event_date: date | None, limit: int, offset: int
) -> list[WaitlistEntry]:
    query = select(WaitlistEntry).order_by(WaitlistEntry.created_at, WaitlistEntry.id)
    if location is not None:
        query = query.where(WaitlistEntry.location_id == location.id)
    if event_date is not None:
        query = query.where(WaitlistEntry.event_date == event_date)
    return list(await session.scalars(query.limit(limit).offset(offset)))


async def leave_waitlist(session: AsyncSession, *, entry_id: object) -> WaitlistEntry:
    entry = await session.get(WaitlistEntry, entry_id)
    if entry is None:
        raise WaitlistEntryNotFound("no such waitlist entry")
    entry.status = WaitlistStatus.cancelled
    await session.flush()
    return entry
