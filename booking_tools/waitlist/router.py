from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from booking_tools.admin.service import audit
from booking_tools.customers.models import Customer
from booking_tools.customers.service import get_or_create_customer
from booking_tools.locations.models import Location
from booking_tools.locations.service import get_location
from booking_tools.waitlist import service
from booking_tools.waitlist.models import WaitlistEntry
from booking_tools.waitlist.schemas import WaitlistJoin, WaitlistList, WaitlistOut
from hibachi.deps import AnyRole, SessionDep, StaffRole

router = APIRouter(prefix="/v1/waitlist", tags=["waitlist"])


async def to_out(session: SessionDep, entry: WaitlistEntry) -> WaitlistOut:
    slug = await session.scalar(select(Location.slug).where(Location.id == entry.location_id))
    phone = await session.scalar(select(Customer.phone).where(Customer.id == entry.customer_id))
    return WaitlistOut(
        id=entry.id,
        location=str(slug),
        customer_phone=str(phone),
        event_date=entry.event_date,
        start_time=entry.start_time,
        party_size=entry.party_size,
        status=entry.status.value,
        created_at=entry.created_at,
        notified_at=entry.notified_at,
    )


@router.post("", response_model=WaitlistOut, status_code=201)
async def join(data: WaitlistJoin, session: SessionDep, who: StaffRole, response: Response) -> WaitlistOut:
    """Join the waitlist of a full slot (409 `SlotHasRoom` if it can simply be booked)."""
    location = await get_location(session, slug=data.location)
    customer = await get_or_create_customer(session, phone=data.customer_phone, name=data.customer_name)
    entry, created = await service.join_waitlist(
        session,
        location=location,
        customer=customer,
        event_date=data.event_date,
        start_time=data.start_time,
        party_size=data.party_size,
    )
    if created:
        await audit(session, actor=who.actor, action="waitlist.join", entity="waitlist", entity_id=entry.id)
    else:
        response.status_code = 200
    return await to_out(session, entry)


@router.get("", response_model=WaitlistList)
async def list_entries(
    session: SessionDep,
    _: AnyRole,
    location: Annotated[str | None, Query(max_length=40)] = None,
    event_date: date | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> WaitlistList:
    loc = await get_location(session, slug=location) if location else None
    rows = await service.list_entries(
        session, location=loc, event_date=event_date, limit=limit, offset=offset
    )
    return WaitlistList(items=[await to_out(session, e) for e in rows], limit=limit, offset=offset)


@router.delete("/{entry_id}", response_model=WaitlistOut)
async def leave(entry_id: uuid.UUID, session: SessionDep, who: StaffRole) -> WaitlistOut:
    entry = await service.leave_waitlist(session, entry_id=entry_id)
    await audit(session, actor=who.actor, action="waitlist.leave", entity="waitlist", entity_id=entry.id)
    return await to_out(session, entry)
