"""The reference business ("My Hibachi") and demo customers. Idempotent."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.customers.models import Customer
from booking_tools.locations.models import Location
from booking_tools.loyalty.models import EntryKind, LoyaltyAccount, LoyaltyEntry, Tier

LOCATIONS = [
    {
        "slug": "bay-area",
        "name": "My Hibachi Bay Area",
        "address": "100 Market St, San Jose, CA 95113",
        "timezone": "America/Los_Angeles",
        "staff_phone": "+14085550100",
        "agent_phone": "+14085550199",
        "sms_provider": "twilio",
        "chefs": 3,
        "staff_open": time(9, 0),
        "staff_close": time(21, 0),
    },
    {
        "slug": "sacramento",
        "name": "My Hibachi Sacramento",
        "address": "200 Capitol Mall, Sacramento, CA 95814",
        "timezone": "America/Los_Angeles",
        "staff_phone": "+19165550100",
        "agent_phone": "+19165550199",
        "sms_provider": "ringcentral",
        "chefs": 2,
        "staff_open": time(9, 0),
        "staff_close": time(21, 0),
    },
]

# (phone, name, lifetime points, spendable points, tier, marketing opt-in)
DEMO_CUSTOMERS = [
    ("+14085550123", "Alex Kim", 600, 600, Tier.bronze, True),
    ("+14085550124", "Maria Lopez", 1_400, 900, Tier.silver, False),
    ("+14085550125", "Sam Patel", 3_100, 1_800, Tier.gold, True),
    ("+19165550126", "Jordan Lee", 5_600, 2_500, Tier.platinum, False),
    ("+19165550127", "Taylor Brooks", 0, 0, Tier.bronze, False),
]


async def seed_locations(session: AsyncSession) -> None:
    for row in LOCATIONS:
        await session.execute(insert(Location).values(**row).on_conflict_do_nothing(index_elements=["slug"]))


async def seed_demo_customers(session: AsyncSession, *, now: datetime) -> None:
    for phone, name, lifetime, points, tier, marketing in DEMO_CUSTOMERS:
        await session.execute(
            insert(Customer)
            .values(phone=phone, name=name, sms_marketing=marketing)
            .on_conflict_do_nothing(index_elements=["phone"])
        )
        customer = await session.scalar(select(Customer).where(Customer.phone == phone))
        assert customer is not None
        if lifetime == 0:
            continue
        created = await session.scalar(
            insert(LoyaltyAccount)
            .values(customer_id=customer.id, points=points, lifetime_points=lifetime, tier=tier)
            .on_conflict_do_nothing(index_elements=["customer_id"])
            .returning(LoyaltyAccount.customer_id)
        )
        if created is None:  # seeded before (or by a concurrent start)
            continue
        # History: older points already spent, the spendable ones earned within the year.
        spent = lifetime - points
        if spent:
            session.add_all(
                [
                    LoyaltyEntry(
                        customer_id=customer.id,
                        kind=EntryKind.earn,
                        points=spent,
                        remaining=0,
                        actor="seed",
                        reason="demo history",
                        expires_at=now + timedelta(days=30),
                    ),
                    LoyaltyEntry(
                        customer_id=customer.id,
                        kind=EntryKind.redeem,
                        points=-spent,
                        actor="seed",
                        reason="demo history",
                    ),
                ]
            )
        session.add(
            LoyaltyEntry(
                customer_id=customer.id,
                kind=EntryKind.earn,
                points=points,
                remaining=points,
                actor="seed",
                reason="demo history",
                expires_at=now + timedelta(days=300),
            )
        )
    await session.flush()


async def seed(session: AsyncSession, *, now: datetime, demo: bool = True) -> None:
    await seed_locations(session)
    if demo:
        await seed_demo_customers(session, now=now)
