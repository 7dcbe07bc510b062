"""Hibachi Rewards: earning, redeeming, expiry, referrals and staff adjustments."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_tools.admin.models import AuditEntry, Role
from booking_tools.bookings import service as bookings
from booking_tools.bookings.schemas import BookingCreate
from booking_tools.customers.service import get_customer
from booking_tools.deposits import service as deposits
from booking_tools.loyalty import service as loyalty
from booking_tools.loyalty.models import EntryKind, LoyaltyAccount, LoyaltyEntry, Tier
from booking_tools.loyalty.tasks import expire_loyalty_points
from hibachi.context import AppContext, utcnow
from hibachi.db import unit_of_work
from tests.conftest import ClientMaker
from tests.factories import booking_body, create_booking, future_date, local_now

PHONE = "+14085550140"
REFERRER = "+14085550141"
# 11 adults + 3 children = $695 of food: max 3,400 points redeemable, odd multiplier results.
PARTY = {"adults": 11, "children": 3}
FOOD_DOLLARS = 695


def loyalty_url(phone: str = PHONE) -> str:
    return f"/v1/customers/{phone}/loyalty"


async def balance(client: httpx.AsyncClient, phone: str = PHONE) -> dict[str, Any]:
    response = await client.get(loyalty_url(phone))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def history(client: httpx.AsyncClient, phone: str = PHONE) -> list[dict[str, Any]]:
    response = await client.get(f"{loyalty_url(phone)}/history", params={"limit": 200})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def give_points(client: httpx.AsyncClient, points: int, phone: str = PHONE) -> None:
    response = await client.post(
        f"{loyalty_url(phone)}/adjustments", json={"points": points, "reason": "test balance"}
    )
    assert response.status_code == 201, response.text


async def new_customer(client: httpx.AsyncClient, phone: str, name: str = "Casey Park") -> None:
    response = await client.post("/v1/customers", json={"phone": phone, "name": name})
    assert response.status_code == 201, response.text


async def past_confirmed_booking(
    app_ctx: AppContext, *, phone: str = PHONE, days_ago: int = 2, referrer_phone: str | None = None
) -> uuid.UUID:
    """A paid booking whose event started `days_ago` days ago (booked a week before it)."""
    booked_at = utcnow() - timedelta(days=days_ago + 7)
    body = booking_body(
        customer_phone=phone,
        event_date=(local_now() - timedelta(days=days_ago)).date().isoformat(),
        referrer_phone=referrer_phone,
        **PARTY,
    )
    async with unit_of_work(app_ctx.sessions) as session:
        booking, _ = await bookings.create_booking(
            session, booking_in=BookingCreate(**body), payments=app_ctx.extras["payments"], now=booked_at
        )
        deposit = await deposits.live_deposit(session, booking_id=booking.id)
        assert deposit is not None
        await deposits.mark_paid(session, deposit=deposit, now=booked_at)
    return booking.id


async def complete(client: httpx.AsyncClient, booking_id: uuid.UUID) -> None:
    response = await client.post(f"/v1/bookings/{booking_id}/complete")
    assert response.status_code == 200, response.text


async def account_and_ledger(
    db: async_sessionmaker[AsyncSession], phone: str = PHONE
) -> tuple[LoyaltyAccount, list[LoyaltyEntry]]:
    async with db() as session:
        customer = await get_customer(session, phone=phone)
        account = await session.get(LoyaltyAccount, customer.id)
        assert account is not None
        lines = await session.scalars(select(LoyaltyEntry).where(LoyaltyEntry.customer_id == customer.id))
        return account, list(lines)


async def redeem(client: httpx.AsyncClient, booking_id: object, points: int) -> httpx.Response:
    return await client.post(f"/v1/bookings/{booking_id}/redeem", json={"points": points})


# -- balances -------------------------------------------------------------------------


async def test_unknown_phone_has_no_loyalty_account(client: httpx.AsyncClient) -> None:
    response = await client.get(loyalty_url("+14085550199"))
    assert response.status_code == 404
    assert response.json()["error"] == "CustomerNotFound"


async def test_known_customer_without_points_is_bronze_with_zeros(client: httpx.AsyncClient) -> None:
    await new_customer(client, PHONE)

    assert await balance(client, "(408) 555-0140") == {
        "phone": PHONE,
        "points": 0,
        "tier": "bronze",
        "lifetime_points": 0,
        "next_tier": "silver",
        "points_to_next_tier": 1000,
        "expiring_within_30_days": 0,
    }


# -- earning --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "lifetime", "earned"),
    [
        (Tier.bronze, 0, 695),  # 695 x 1
        (Tier.silver, 1_000, 764),  # 695 x 1.1 = 764.5
        (Tier.gold, 2_500, 868),  # 695 x 1.25 = 868.75
        (Tier.platinum, 5_000, 1_042),  # 695 x 1.5 = 1042.5
    ],
)
async def test_completed_event_earns_a_point_per_dollar_times_tier_multiplier(
    client: httpx.AsyncClient,
    app_ctx: AppContext,
    db: async_sessionmaker[AsyncSession],
    tier: Tier,
    lifetime: int,
    earned: int,
) -> None:
    await new_customer(client, PHONE)
    async with unit_of_work(db) as session:
        customer = await get_customer(session, phone=PHONE)
        session.add(LoyaltyAccount(customer_id=customer.id, points=0, lifetime_points=lifetime, tier=tier))
    booking_id = await past_confirmed_booking(app_ctx)

    await complete(client, booking_id)

    state = await balance(client)
    assert state["points"] == earned
    assert state["lifetime_points"] == lifetime + earned
    assert state["tier"] == tier.value
    [line] = await history(client)
    assert line["kind"] == "earn"
    assert line["points"] == earned
    assert line["booking_id"] == str(booking_id)


async def test_earning_past_a_threshold_moves_the_customer_up_a_tier(
    client: httpx.AsyncClient, app_ctx: AppContext, db: async_sessionmaker[AsyncSession]
) -> None:
    await new_customer(client, PHONE)
    async with unit_of_work(db) as session:
        customer = await get_customer(session, phone=PHONE)
        session.add(LoyaltyAccount(customer_id=customer.id, points=0, lifetime_points=900))

    await complete(client, await past_confirmed_booking(app_ctx))

    state = await balance(client)
    assert (state["tier"], state["lifetime_points"]) == ("silver", 1_595)
    assert (state["next_tier"], state["points_to_next_tier"]) == ("gold", 905)


async def test_points_are_awarded_once_per_booking(
    client: httpx.AsyncClient, app_ctx: AppContext, db: async_sessionmaker[AsyncSession]
) -> None:
    booking_id = await past_confirmed_booking(app_ctx)
    await complete(client, booking_id)

    async with unit_of_work(db) as session:
        booking = await bookings.load_booking(session, booking_id=booking_id, lock=True)
        await loyalty.award_for_completed_booking(session, booking=booking, now=utcnow())
    again = await client.post(f"/v1/bookings/{booking_id}/complete")

    assert again.status_code == 409
    assert (await balance(client))["points"] == FOOD_DOLLARS


def test_tiers_follow_lifetime_points() -> None:
    assert [loyalty.tier_for(p) for p in (0, 999, 1_000, 2_499, 2_500, 4_999, 5_000, 90_000)] == [
        Tier.bronze,
        Tier.bronze,
        Tier.silver,
        Tier.silver,
        Tier.gold,
        Tier.gold,
        Tier.platinum,
        Tier.platinum,
    ]


# -- redeeming ------------------------------------------------------------------------


async def test_points_redeem_in_100_point_steps_up_to_half_the_food(client: httpx.AsyncClient) -> None:
    await new_customer(client, PHONE)
    await give_points(client, 5_000)
    booking = await create_booking(client, customer_phone=PHONE, **PARTY)

    not_a_step = await redeem(client, booking["id"], 150)
    first = await redeem(client, booking["id"], 1_000)
    up_to_half = await redeem(client, booking["id"], 2_400)
    over_half = await redeem(client, booking["id"], 100)

    assert not_a_step.status_code == 422
    assert first.status_code == 200, first.text
    assert first.json()["quote"]["discount"] == 100.0
    assert up_to_half.status_code == 200, up_to_half.text
    assert up_to_half.json()["points_redeemed"] == 3_400
    assert up_to_half.json()["quote"]["discount"] == 340.0  # half of $695, in $10 steps
    assert over_half.status_code == 422
    assert over_half.json()["error"] == "RedemptionRejected"
    assert (await balance(client))["points"] == 1_600


async def test_redeeming_more_than_the_balance_is_refused(client: httpx.AsyncClient) -> None:
    await new_customer(client, PHONE)
    await give_points(client, 200)
    booking = await create_booking(client, customer_phone=PHONE, **PARTY)

    response = await redeem(client, booking["id"], 300)

    assert response.status_code == 409
    assert response.json()["error"] == "InsufficientPoints"
    assert (await balance(client))["points"] == 200
    after = await client.get(f"/v1/bookings/{booking['id']}")
    assert after.json()["points_redeemed"] == 0
    assert after.json()["quote"]["discount"] == 0.0


async def test_redeeming_uses_the_soonest_expiring_points_first(
    client: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    await new_customer(client, PHONE)
    async with unit_of_work(db) as session:
        customer = await get_customer(session, phone=PHONE)
        await loyalty.adjust_points(
            session,
            customer=customer,
            points=200,
            actor="test",
            reason="old",
            now=utcnow() - timedelta(days=300),
        )
    await give_points(client, 300)
    booking = await create_booking(client, customer_phone=PHONE, **PARTY)

    assert (await redeem(client, booking["id"], 300)).status_code == 200

    _, lines = await account_and_ledger(db)
    by_reason = {line.reason: line.remaining for line in lines if line.kind is EntryKind.adjust}
    assert by_reason == {"old": 0, "test balance": 200}


async def test_concurrent_redemptions_never_overdraw_the_balance(
    client: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    await new_customer(client, PHONE)
    await give_points(client, 1_000)
    booking_ids = [
        (await create_booking(client, customer_phone=PHONE, event_date=future_date(10 + i).isoformat()))["id"]
        for i in range(5)
    ]

    responses = await asyncio.gather(*(redeem(client, booking_ids[i % 5], 100) for i in range(50)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [409] * 40
    account, lines = await account_and_ledger(db)
    assert account.points == 0
    assert sum(line.points for line in lines) == account.points
    assert sum(line.remaining for line in lines) == account.points
    assert sum(-line.points for line in lines if line.kind is EntryKind.redeem) == 1_000
    redeemed = [(await client.get(f"/v1/bookings/{b}")).json()["points_redeemed"] for b in booking_ids]
    assert sum(redeemed) == 1_000


async def test_cancelled_booking_returns_its_redeemed_points(
    client: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    await new_customer(client, PHONE)
    await give_points(client, 1_000)
    booking = await create_booking(client, customer_phone=PHONE, **PARTY)
    assert (await redeem(client, booking["id"], 300)).status_code == 200
    assert (await balance(client))["points"] == 700

    response = await client.post(f"/v1/bookings/{booking['id']}/cancel", json={"reason": "plans changed"})
    assert response.status_code == 200, response.text
    async with unit_of_work(db) as session:  # returning again changes nothing
        cancelled = await bookings.load_booking(session, booking_id=uuid.UUID(booking["id"]), lock=True)
        await loyalty.return_redeemed_points(session, booking=cancelled, now=utcnow())

    assert (await balance(client))["points"] == 1_000
    refunds = [line for line in await history(client) if line["kind"] == "refund"]
    assert [r["points"] for r in refunds] == [300]
    expires = datetime.fromisoformat(refunds[0]["expires_at"])
    assert timedelta(days=364) < expires - utcnow() < timedelta(days=367)


async def test_points_cannot_be_used_on_a_cancelled_booking(client: httpx.AsyncClient) -> None:
    await new_customer(client, PHONE)
    await give_points(client, 500)
    booking = await create_booking(client, customer_phone=PHONE, **PARTY)
    await client.post(f"/v1/bookings/{booking['id']}/cancel", json={})

    response = await redeem(client, booking["id"], 100)

    assert response.status_code == 409
    assert (await balance(client))["points"] == 500


# -- expiry ---------------------------------------------------------------------------


async def test_points_expire_12_months_after_they_were_earned(
    client: httpx.AsyncClient, app_ctx: AppContext, db: async_sessionmaker[AsyncSession]
) -> None:
    await complete(client, await past_confirmed_booking(app_ctx))
    [earned] = await history(client)
    expires_at = datetime.fromisoformat(earned["expires_at"])
    assert timedelta(days=364) < expires_at - utcnow() < timedelta(days=367)

    async with unit_of_work(db) as session:
        before = await loyalty.expire_points(session, now=expires_at - timedelta(seconds=1))
    async with unit_of_work(db) as session:
        at_expiry = await loyalty.expire_points(session, now=expires_at)

    assert (before, at_expiry) == (0, FOOD_DOLLARS)
    account, lines = await account_and_ledger(db)
    assert account.points == 0
    assert account.lifetime_points == FOOD_DOLLARS
    assert sorted(line.points for line in lines) == [-FOOD_DOLLARS, FOOD_DOLLARS]


async def test_expiry_job_lapses_old_points_and_balance_hides_them_before_it_runs(
    client: httpx.AsyncClient, app_ctx: AppContext, db: async_sessionmaker[AsyncSession]
) -> None:
    await new_customer(client, PHONE)
    await give_points(client, 100)
    async with unit_of_work(db) as session:
        customer = await get_customer(session, phone=PHONE)
        for days_ago, points in ((400, 300), (350, 200)):
            await loyalty.adjust_points(
                session,
                customer=customer,
                points=points,
                actor="test",
                reason=f"{days_ago} days ago",
                now=utcnow() - timedelta(days=days_ago),
            )

    shown = await balance(client)
    assert (shown["points"], shown["expiring_within_30_days"]) == (300, 200)

    assert await expire_loyalty_points({"app": app_ctx}) == 300
    assert await expire_loyalty_points({"app": app_ctx}) == 0
    account, lines = await account_and_ledger(db)
    assert account.points == 300 == sum(line.points for line in lines)


async def test_redeeming_expired_points_is_refused(
    client: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    await new_customer(client, PHONE)
    async with unit_of_work(db) as session:
        customer = await get_customer(session, phone=PHONE)
        await loyalty.adjust_points(
            session,
            customer=customer,
            points=500,
            actor="test",
            reason="old",
            now=utcnow() - timedelta(days=400),
        )
    booking = await create_booking(client, customer_phone=PHONE, **PARTY)

    response = await redeem(client, booking["id"], 100)

    assert response.status_code == 409
    assert response.json()["error"] == "InsufficientPoints"


# -- referrals ------------------------------------------------------------------------


async def test_referred_customer_gets_10_percent_off_the_first_event_only(
    client: httpx.AsyncClient,
) -> None:
    await new_customer(client, REFERRER)

    first = await create_booking(client, customer_phone=PHONE, referrer_phone="(408) 555-0141")
    second = await create_booking(client, customer_phone=PHONE, event_date=future_date(12).isoformat())

    assert first["quote"]["food_subtotal"] == 720.0
    assert first["quote"]["discount"] == 72.0
    assert second["quote"]["discount"] == 0.0


async def test_referrer_earns_500_points_once_when_the_first_event_is_completed(
    client: httpx.AsyncClient, app_ctx: AppContext
) -> None:
    await new_customer(client, REFERRER)
    first = await past_confirmed_booking(app_ctx, days_ago=3, referrer_phone=REFERRER)
    second = await past_confirmed_booking(app_ctx, days_ago=2)

    await complete(client, first)
    await complete(client, second)

    referrer = await balance(client, REFERRER)
    assert (referrer["points"], referrer["lifetime_points"]) == (500, 500)
    assert [line["kind"] for line in await history(client, REFERRER)] == ["referral"]
    assert (await balance(client))["points"] == 2 * FOOD_DOLLARS


@pytest.mark.parametrize(
    ("referrer_phone", "booked_before"),
    [("+14085550142", False), (PHONE, False), (REFERRER, True)],
    ids=["unknown-referrer", "self-referral", "returning-customer"],
)
async def test_invalid_referrals_are_refused(
    client: httpx.AsyncClient, referrer_phone: str, booked_before: bool
) -> None:
    await new_customer(client, REFERRER)
    await new_customer(client, PHONE)
    if booked_before:
        await create_booking(client, customer_phone=PHONE)

    response = await client.post(
        "/v1/bookings",
        json=booking_body(
            customer_phone=PHONE, referrer_phone=referrer_phone, event_date=future_date(20).isoformat()
        ),
    )

    assert response.status_code == 422
    assert response.json()["error"] == "ReferralRejected"


# -- staff adjustments ----------------------------------------------------------------


async def test_analyst_cannot_adjust_points(client_as: ClientMaker, client: httpx.AsyncClient) -> None:
    await new_customer(client, PHONE)
    analyst = await client_as(Role.analyst)

    response = await analyst.post(f"{loyalty_url()}/adjustments", json={"points": 100, "reason": "please"})

    assert response.status_code == 403
    assert (await balance(analyst))["points"] == 0


async def test_staff_adjustments_are_audited_and_never_go_below_zero(
    client_as: ClientMaker, client: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    await new_customer(client, PHONE)
    staff = await client_as(Role.staff)

    added = await staff.post(f"{loyalty_url()}/adjustments", json={"points": 250, "reason": "chef was late"})
    removed = await staff.post(f"{loyalty_url()}/adjustments", json={"points": -50, "reason": "typo fix"})
    too_many = await staff.post(f"{loyalty_url()}/adjustments", json={"points": -500, "reason": "oops"})
    zero = await staff.post(f"{loyalty_url()}/adjustments", json={"points": 0, "reason": "nothing"})

    assert added.status_code == 201, added.text
    assert added.json()["entry"]["actor"] == "staff:test-staff"
    assert removed.status_code == 201, removed.text
    assert removed.json()["balance"]["points"] == 200
    assert too_many.status_code == 409
    assert zero.status_code == 422
    assert (await balance(staff))["points"] == 200
    async with db() as session:
        audits = list(
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "loyalty.adjust")
                .order_by(AuditEntry.created_at)
            )
        )
        ledger_adjusts = await session.scalar(
            select(func.count()).select_from(LoyaltyEntry).where(LoyaltyEntry.kind == EntryKind.adjust)
        )
    assert len(audits) == ledger_adjusts == 2
    assert all(a.actor == "staff:test-staff" for a in audits)
    assert [(a.before or {}).get("points") for a in audits] == [0, 250]
    assert [(a.after or {}).get("points") for a in audits] == [250, 200]


async def test_recompute_tier_after_a_merge_combines_lifetime_points(
    client: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    await new_customer(client, PHONE)
    await new_customer(client, REFERRER)
    await give_points(client, 600, PHONE)
    await give_points(client, 600, REFERRER)
    merged = await client.post(f"/v1/customers/{PHONE}/merge", json={"duplicate_phone": REFERRER})
    assert merged.status_code == 200, merged.text

    async with unit_of_work(db) as session:
        keep = await get_customer(session, phone=PHONE)
        tier = await loyalty.recompute_tier(session, customer_id=keep.id)

    assert tier is Tier.silver
    state = await balance(client)
    assert (state["points"], state["lifetime_points"], state["tier"]) == (1_200, 1_200, "silver")
    assert (await balance(client, REFERRER))["points"] == 1_200  # the merged number shows the survivor
