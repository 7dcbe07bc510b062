"""Customers are identified by their E.164 phone number."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.customers.models import Customer
from booking_tools.customers.phone import to_e164
from booking_tools.customers.schemas import CustomerCreate, CustomerUpdate
from hibachi.errors import Conflict, NotFound, RuleViolation


class CustomerNotFound(NotFound):
    pass


class CustomerExists(Conflict):
    pass


def snapshot(customer: Customer) -> dict[str, Any]:
    """The audited fields of a customer."""
    return {
        "phone": customer.phone,
        "name": customer.name,
        "email": customer.email,
        "language": customer.language,
        "sms_transactional": customer.sms_transactional,
        "sms_marketing": customer.sms_marketing,
        "opted_out": customer.opted_out,
    }


async def find_customer(session: AsyncSession, *, phone: str) -> Customer | None:
    return await session.scalar(select(Customer).where(Customer.phone == to_e164(phone)))


async def get_customer(session: AsyncSession, *, phone: str) -> Customer:
    customer = await find_customer(session, phone=phone)
    if customer is None:
        raise CustomerNotFound(f"no customer with phone {to_e164(phone)}")
    return customer


async def get_or_create_customer(session: AsyncSession, *, phone: str, name: str | None = None) -> Customer:
    """Race-free upsert by phone in one round trip; fills in a missing name."""
    e164 = to_e164(phone)
    stmt = (
        insert(Customer)
        .values(id=uuid.uuid4(), phone=e164, name=name)
        .on_conflict_do_update(
            index_elements=["phone"],
            set_={"name": func.coalesce(Customer.name, literal_column("excluded.name"))},
        )
        .returning(Customer)
    )
    customer: Customer | None = await session.scalar(
        select(Customer).from_statement(stmt).execution_options(populate_existing=True)
    )
    assert customer is not None  # the upsert always returns the row
    return customer


async def create_customer(session: AsyncSession, *, data: CustomerCreate) -> Customer:
    if await find_customer(session, phone=data.phone) is not None:
        raise CustomerExists(f"a customer with phone {to_e164(data.phone)} already exists")
    customer = Customer(
        phone=to_e164(data.phone),
        name=data.name,
        email=data.email,
        language=data.language,
        sms_marketing=data.sms_marketing,
    )
    session.add(customer)
    await session.flush()
    return customer


async def update_customer(session: AsyncSession, *, customer: Customer, data: CustomerUpdate) -> Customer:
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(customer, field, value)
    await session.flush()
    return customer


async def list_customers(
    session: AsyncSession, *, query: str | None, limit: int, offset: int
) -> tuple[list[Customer], int]:
    stmt = select(Customer).where(Customer.merged_into_id.is_(None))
    if query:
        like = f"%{query}%"
        stmt = stmt.where(Customer.name.ilike(like) | Customer.phone.like(like))
    total = await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = await session.scalars(stmt.order_by(Customer.created_at, Customer.id).limit(limit).offset(offset))
    return list(rows), total


async def set_opt_out(session: AsyncSession, *, phone: str, opted_out: bool, now: datetime) -> Customer:
    """STOP / START: opt the number out of (or back into) all texts."""
    customer = await get_or_create_customer(session, phone=phone)
    customer.opted_out_at = (customer.opted_out_at or now) if opted_out else None
    await session.flush()
    return customer


async def merge_customers(session: AsyncSession, *, keep: Customer, duplicate: Customer) -> Customer:
    """Move everything the duplicate owns onto `keep`; the duplicate stays as a tombstone."""
    from booking_tools.bookings.models import Booking
    from booking_tools.loyalty.models import LoyaltyAccount, LoyaltyEntry
    from booking_tools.loyalty.service import recompute_tier
    from booking_tools.messaging.models import OutboundMessage
    from booking_tools.waitlist.models import WaitlistEntry

    if keep.id == duplicate.id:
        raise RuleViolation("cannot merge a customer into itself")
    if duplicate.merged_into_id is not None:
        raise Conflict("that customer was already merged")
    for model in (Booking, LoyaltyEntry, WaitlistEntry, OutboundMessage):
        await session.execute(
            update(model).where(model.customer_id == duplicate.id).values(customer_id=keep.id)
        )
    accounts = {
        a.customer_id: a
        for a in await session.scalars(
            select(LoyaltyAccount)
            .where(LoyaltyAccount.customer_id.in_([keep.id, duplicate.id]))
            .with_for_update()
        )
    }
    dup_account = accounts.get(duplicate.id)
    if dup_account is not None:
        keep_account = accounts.get(keep.id)
        if keep_account is None:
            keep_account = LoyaltyAccount(customer_id=keep.id, points=0, lifetime_points=0)
            session.add(keep_account)
        keep_account.points += dup_account.points
        keep_account.lifetime_points += dup_account.lifetime_points
        dup_account.points = 0
        dup_account.lifetime_points = 0
    keep.name = keep.name or duplicate.name
    keep.email = keep.email or duplicate.email
    keep.sms_marketing = keep.sms_marketing or duplicate.sms_marketing
    duplicate.merged_into_id = keep.id
    await session.flush()
    if dup_account is not None:
        await recompute_tier(session, customer_id=keep.id)
    return keep
