"""Who may be texted: opt-out blocks everything, marketing needs consent, staff texts always go."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_tools.customers.service import get_or_create_customer, set_opt_out
from booking_tools.locations.models import Location
from booking_tools.messaging.models import MessageKind, MessageStatus
from booking_tools.messaging.service import queue_text
from hibachi.context import utcnow
from hibachi.db import unit_of_work

PHONE = "+14085550170"


async def bay_area(session: AsyncSession) -> Location:
    location = await session.scalar(select(Location).where(Location.slug == "bay-area"))
    assert location is not None
    return location


async def test_marketing_texts_need_marketing_consent(db: async_sessionmaker[AsyncSession]) -> None:
    async with unit_of_work(db) as session:
        customer = await get_or_create_customer(session, phone=PHONE)
        promo = await queue_text(
            session,
            location=await bay_area(session),
            to_phone=PHONE,
            customer=customer,
            body="Holiday special!",
            template="promo",
            kind=MessageKind.marketing,
        )
        assert promo.status == MessageStatus.blocked
        assert promo.error == "no marketing consent"
        customer.sms_marketing = True
        promo2 = await queue_text(
            session,
            location=await bay_area(session),
            to_phone=PHONE,
            customer=customer,
            body="Holiday special!",
            template="promo",
            kind=MessageKind.marketing,
        )
        assert promo2.status == MessageStatus.queued


async def test_opted_out_numbers_get_no_texts_but_staff_texts_still_go(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with unit_of_work(db) as session:
        customer = await set_opt_out(session, phone=PHONE, opted_out=True, now=utcnow())
        location = await bay_area(session)
        booking_text = await queue_text(
            session, location=location, to_phone=PHONE, customer=customer, body="Reminder", template="x"
        )
        assert booking_text.status == MessageStatus.blocked
        staff = await queue_text(
            session,
            location=location,
            to_phone=location.staff_phone,
            body="Summary",
            template="staff",
            kind=MessageKind.staff,
        )
        assert staff.status == MessageStatus.queued


async def test_same_dedupe_key_queues_one_text(db: async_sessionmaker[AsyncSession]) -> None:
    async with unit_of_work(db) as session:
        customer = await get_or_create_customer(session, phone=PHONE)
        location = await bay_area(session)
        first = await queue_text(
            session,
            location=location,
            to_phone=PHONE,
            customer=customer,
            body="a",
            template="x",
            dedupe_key="once",
        )
        second = await queue_text(
            session,
            location=location,
            to_phone=PHONE,
            customer=customer,
            body="b",
            template="x",
            dedupe_key="once",
        )
        assert first.id == second.id
