"""`hibachi seed`: the reference business and demo customers, idempotent and consistent."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_tools.customers.models import Customer
from booking_tools.locations.models import Location
from booking_tools.loyalty.models import LoyaltyAccount, LoyaltyEntry
from booking_tools.seed import seed
from hibachi.context import utcnow
from hibachi.db import unit_of_work


async def test_seeding_twice_changes_nothing_and_ledgers_add_up(db: async_sessionmaker[AsyncSession]) -> None:
    for _ in range(2):
        async with unit_of_work(db) as session:
            await seed(session, now=utcnow(), demo=True)
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Location)) == 2
        assert await session.scalar(select(func.count()).select_from(Customer)) == 5
        for account in await session.scalars(select(LoyaltyAccount)):
            ledger = await session.scalar(
                select(func.sum(LoyaltyEntry.points)).where(LoyaltyEntry.customer_id == account.customer_id)
            )
            assert ledger == account.points
