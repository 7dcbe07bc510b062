"""Hibachi Rewards: a cached account per customer over an append-only ledger.

Every change to a balance first takes the customer's `loyalty_accounts` row FOR UPDATE
(lock order: the booking row, if any, then accounts in customer-id order), lapses any
points past their expiry, and only then appends ledger lines and updates the cached
totals. Positive lines (earn, referral, refund, positive adjust) carry `remaining` and
`expires_at` (12 months on); spending consumes them soonest-expiry first, and expiry
writes an `expire` line for what is left. Invariant per customer:
`account.points == sum(ledger.points) == sum(remaining)`, and never below zero.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.bookings import pricing
from booking_tools.bookings.errors import InvalidTransition
from booking_tools.bookings.models import Booking, BookingStatus
from booking_tools.customers.models import Customer
from booking_tools.customers.phone import to_e164
from booking_tools.customers.service import find_customer
from booking_tools.loyalty.models import EntryKind, LoyaltyAccount, LoyaltyEntry, Tier
from hibachi.errors import Conflict, RuleViolation

POINTS_VALID_MONTHS = 12
EXPIRY_NOTICE = timedelta(days=30)
REFERRAL_BONUS_POINTS = 500
REFERRAL_DISCOUNT_BP = 1_000  # 10 % in basis points
MAX_ADJUSTMENT_POINTS = 100_000
SYSTEM_ACTOR = "system"

# Lowest first: (tier, lifetime points needed, earn multiplier in percent).
TIERS: tuple[tuple[Tier, int, int], ...] = (
    (Tier.bronze, 0, 100),
    (Tier.silver, 1_000, 110),
    (Tier.gold, 2_500, 125),
    (Tier.platinum, 5_000, 150),
)
EARN_MULTIPLIER_PCT = {tier: pct for tier, _, pct in TIERS}
REDEEMABLE = (BookingStatus.pending_deposit, BookingStatus.confirmed)


class ReferralRejected(RuleViolation):
    """The referral can't be recorded (unknown referrer, self-referral, returning customer)."""


class RedemptionRejected(RuleViolation):
    """Points can't be used this way (not in 100-point steps, or over half the food)."""


class InvalidAdjustment(RuleViolation):
    pass


class InsufficientPoints(Conflict):
    """The balance is too low; nothing was spent."""


@dataclass(frozen=True, slots=True)
class Balance:
    points: int
    lifetime_points: int
    tier: Tier
    expiring_soon: int

    @property
    def next_tier(self) -> Tier | None:
        return next_tier_after(self.tier)

    @property
    def points_to_next_tier(self) -> int | None:
        upcoming = self.next_tier
        if upcoming is None:
            return None
        return max(0, tier_threshold(upcoming) - self.lifetime_points)


# -- pure rules ----------------------------------------------------------------------


def tier_for(lifetime_points: int) -> Tier:
    """The tier earned by `lifetime_points`: bronze 0, silver 1,000, gold 2,500, platinum 5,000."""
    current = Tier.bronze
    for tier, threshold, _ in TIERS:
        if lifetime_points >= threshold:
            current = tier
    return current


def tier_threshold(tier: Tier) -> int:
    return next(threshold for t, threshold, _ in TIERS if t is tier)


def next_tier_after(tier: Tier) -> Tier | None:
    order = [t for t, _, _ in TIERS]
    index = order.index(tier)
    return order[index + 1] if index + 1 < len(order) else None


def points_for_event(food_subtotal_cents: int, tier: Tier) -> int:
    """1 point per whole dollar of food, times the tier multiplier, rounded down."""
    return food_subtotal_cents // 100 * EARN_MULTIPLIER_PCT[tier] // 100


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (clamped to the last day of a short month)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def expiry_for(earned_at: datetime) -> datetime:
    return add_months(earned_at, POINTS_VALID_MONTHS)


# -- accounts and ledger mechanics ---------------------------------------------------


async def lock_accounts(
    session: AsyncSession, customer_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, LoyaltyAccount]:
    """Create missing accounts, then lock them FOR UPDATE in customer-id order (no deadlocks)."""
    ids = sorted(set(customer_ids))
    await session.execute(
        insert(LoyaltyAccount)
        .values([{"customer_id": i, "points": 0, "lifetime_points": 0, "tier": Tier.bronze} for i in ids])
        .on_conflict_do_nothing(index_elements=["customer_id"])
    )
    rows = await session.scalars(
        select(LoyaltyAccount)
        .where(LoyaltyAccount.customer_id.in_(ids))
        .order_by(LoyaltyAccount.customer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {account.customer_id: account for account in rows}


async def _lapse_expired(session: AsyncSession, account: LoyaltyAccount, *, now: datetime) -> int:
    """With the account locked: write `expire` lines for what is left of lapsed lines."""
    lines = await session.scalars(
        select(LoyaltyEntry)
        .where(
            LoyaltyEntry.customer_id == account.customer_id,
            LoyaltyEntry.remaining > 0,
            LoyaltyEntry.expires_at <= now,
        )
        .order_by(LoyaltyEntry.expires_at, LoyaltyEntry.id)
    )
    expired = 0
    for line in lines:
        session.add(
            LoyaltyEntry(
                customer_id=account.customer_id,
                kind=EntryKind.expire,
                points=-line.remaining,
                booking_id=line.booking_id,
                actor=SYSTEM_ACTOR,
                reason=f"{line.kind.value} points reached their 12-month expiry",
            )
        )
        expired += line.remaining
        line.remaining = 0
    account.points -= expired
    await session.flush()
    return expired


async def _consume(session: AsyncSession, account: LoyaltyAccount, *, points: int) -> None:
    """Take `points` from positive lines, soonest expiry first (the caller checked the balance)."""
    lines = await session.scalars(
        select(LoyaltyEntry)
        .where(LoyaltyEntry.customer_id == account.customer_id, LoyaltyEntry.remaining > 0)
        .order_by(LoyaltyEntry.expires_at.asc().nulls_last(), LoyaltyEntry.created_at, LoyaltyEntry.id)
    )
    left = points
    for line in lines:
        if left == 0:
            break
        used = min(line.remaining, left)
        line.remaining -= used
        left -= used
    if left:
        raise InsufficientPoints("the ledger does not hold enough unexpired points")


def _credit(
    session: AsyncSession,
    account: LoyaltyAccount,
    *,
    kind: EntryKind,
    points: int,
    now: datetime,
    actor: str,
    reason: str,
    booking_id: uuid.UUID | None = None,
    counts_toward_tier: bool = True,
) -> LoyaltyEntry:
    """Add spendable points that expire 12 months from `now`."""
    entry = LoyaltyEntry(
        customer_id=account.customer_id,
        kind=kind,
        points=points,
        remaining=points,
        booking_id=booking_id,
        expires_at=expiry_for(now),
        actor=actor,
        reason=reason,
    )
    session.add(entry)
    account.points += points
    if counts_toward_tier:
        account.lifetime_points += points
        account.tier = tier_for(account.lifetime_points)
    return entry


async def account_holder(session: AsyncSession, *, customer: Customer) -> Customer:
    """The customer record that holds the points: follows merges to the surviving record."""
    seen = {customer.id}
    while customer.merged_into_id is not None:
        survivor = await session.get(Customer, customer.merged_into_id)
        if survivor is None or survivor.id in seen:
            break
        seen.add(survivor.id)
        customer = survivor
    return customer


# -- referrals -----------------------------------------------------------------------


async def record_referral(session: AsyncSession, *, customer: Customer, referrer_phone: str) -> None:
    """Remember who referred a new customer (the bonus is paid on their first completed event).

    Only a customer with no bookings yet can be referred, once, by another existing
    customer. Repeating the same referral is a no-op.
    """
    found = await find_customer(session, phone=referrer_phone)
    if found is None:
        raise ReferralRejected(
            f"no customer with phone {to_e164(referrer_phone)}; the referrer must be an existing customer"
        )
    referrer = await account_holder(session, customer=found)
    if referrer.id == customer.id:
        raise ReferralRejected("customers can't refer themselves")
    if customer.referred_by_id == referrer.id:
        return
    if customer.referred_by_id is not None:
        raise ReferralRejected("this customer was already referred by someone else")
    booked_before = await session.scalar(
        select(Booking.id).where(Booking.customer_id == customer.id).limit(1)
    )
    if booked_before is not None:
        raise ReferralRejected("referrals are for new customers, and this customer has booked before")
    if referrer.referred_by_id == customer.id:
        raise ReferralRejected("this customer referred the referrer, so they can't be referred back")
    customer.referred_by_id = referrer.id
    await session.flush()


async def first_event_referral_discount(
    session: AsyncSession, *, customer: Customer, food_subtotal_cents: int
) -> int:
    """10 % off the food of a referred customer's first event, in cents (0 otherwise).

    Call before inserting the new booking: any other non-cancelled booking means this
    is not the first event.
    """
    if customer.referred_by_id is None or food_subtotal_cents <= 0:
        return 0
    other = await session.scalar(
        select(Booking.id)
        .where(Booking.customer_id == customer.id, Booking.status != BookingStatus.cancelled)
        .limit(1)
    )
    if other is not None:
        return 0
    return pricing.percent(food_subtotal_cents, REFERRAL_DISCOUNT_BP)


async def _pay_referral_bonus(
    session: AsyncSession, *, booking: Booking, referrer: LoyaltyAccount, now: datetime
) -> None:
    """500 points to the referrer when the referred customer's first event is completed (once)."""
    earlier = await session.scalar(
        select(Booking.id)
        .where(
            Booking.customer_id == booking.customer_id,
            Booking.status == BookingStatus.completed,
            Booking.id != booking.id,
        )
        .limit(1)
    )
    paid = await session.scalar(
        select(LoyaltyEntry.id)
        .join(Booking, LoyaltyEntry.booking_id == Booking.id)
        .where(LoyaltyEntry.kind == EntryKind.referral, Booking.customer_id == booking.customer_id)
        .limit(1)
    )
    if earlier is not None or paid is not None:
        return
    await _lapse_expired(session, referrer, now=now)
    _credit(
        session,
        referrer,
        kind=EntryKind.referral,
        points=REFERRAL_BONUS_POINTS,
        now=now,
        actor=SYSTEM_ACTOR,
        reason="referral bonus: a customer you referred completed their first event",
        booking_id=booking.id,
    )


# -- earning, spending, returning ----------------------------------------------------


async def award_for_completed_booking(session: AsyncSession, *, booking: Booking, now: datetime) -> None:
    """Earn points for a completed event (tier multiplier) and pay any referral bonus.

    Idempotent per booking: a second call finds the earn line and the referral line.
    """
    customer = await session.get(Customer, booking.customer_id)
    assert customer is not None  # FK
    referrer_id = customer.referred_by_id
    ids = [booking.customer_id] if referrer_id is None else [booking.customer_id, referrer_id]
    accounts = await lock_accounts(session, ids)
    account = accounts[booking.customer_id]
    earned = await session.scalar(
        select(LoyaltyEntry.id)
        .where(LoyaltyEntry.booking_id == booking.id, LoyaltyEntry.kind == EntryKind.earn)
        .limit(1)
    )
    if earned is None:
        await _lapse_expired(session, account, now=now)
        points = points_for_event(booking.food_subtotal_cents, account.tier)
        if points > 0:
            pct = EARN_MULTIPLIER_PCT[account.tier]
            _credit(
                session,
                account,
                kind=EntryKind.earn,
                points=points,
                now=now,
                actor=SYSTEM_ACTOR,
                reason=f"event {booking.code} completed ({account.tier.value}, x{pct / 100:g})",
                booking_id=booking.id,
            )
    if referrer_id is not None:
        await _pay_referral_bonus(session, booking=booking, referrer=accounts[referrer_id], now=now)
    await session.flush()


async def redeem_on_booking(
    session: AsyncSession, *, booking: Booking, points: int, actor: str, now: datetime
) -> None:
    """Spend points on a pending or confirmed booking: 100 points = $10 off, up to half the food.

    The caller holds the booking row lock (`load_booking(lock=True)`); this takes the
    account lock, so concurrent redemptions can never overdraw the balance.
    """
    if booking.status not in REDEEMABLE:
        raise InvalidTransition(
            f"booking {booking.code} is {booking.status.value}; points can only be used on "
            "pending or confirmed bookings"
        )
    step = pricing.POINTS_PER_REDEEM_STEP
    if points <= 0 or points % step:
        raise RedemptionRejected(f"points are used in steps of {step} ({step} points = $10 off)")
    cap = pricing.max_redeemable_points(booking.food_subtotal_cents)
    if booking.points_redeemed + points > cap:
        left = max(0, cap - booking.points_redeemed)
        raise RedemptionRejected(
            f"at most {cap} points can be used on this booking (half its food); {left} more can be used"
        )
    account = (await lock_accounts(session, [booking.customer_id]))[booking.customer_id]
    await _lapse_expired(session, account, now=now)
    if account.points < points:
        raise InsufficientPoints(f"the balance is {account.points} points, not enough to use {points}")
    await _consume(session, account, points=points)
    session.add(
        LoyaltyEntry(
            customer_id=account.customer_id,
            kind=EntryKind.redeem,
            points=-points,
            booking_id=booking.id,
            actor=actor,
            reason=f"used on booking {booking.code}",
        )
    )
    account.points -= points
    booking.points_redeemed += points
    booking.discount_cents += pricing.redeem_value(points)
    await session.flush()


async def return_redeemed_points(session: AsyncSession, *, booking: Booking, now: datetime) -> None:
    """Give back points redeemed on a booking that was cancelled (valid 12 months). Idempotent."""
    if booking.points_redeemed <= 0:
        return
    account = (await lock_accounts(session, [booking.customer_id]))[booking.customer_id]
    returned = await session.scalar(
        select(func.coalesce(func.sum(LoyaltyEntry.points), 0)).where(
            LoyaltyEntry.booking_id == booking.id, LoyaltyEntry.kind == EntryKind.refund
        )
    )
    due = booking.points_redeemed - int(returned or 0)
    if due <= 0:
        return
    await _lapse_expired(session, account, now=now)
    _credit(
        session,
        account,
        kind=EntryKind.refund,
        points=due,
        now=now,
        actor=SYSTEM_ACTOR,
        reason=f"returned: booking {booking.code} was cancelled",
        booking_id=booking.id,
        counts_toward_tier=False,
    )
    await session.flush()


async def adjust_points(
    session: AsyncSession, *, customer: Customer, points: int, actor: str, reason: str, now: datetime
) -> LoyaltyEntry:
    """A staff correction: add points (valid 12 months, counted toward tier) or remove them.

    Only staff and admins may call this (the router enforces it). A removal never takes
    the balance below zero: it is refused with `InsufficientPoints` instead.
    """
    if points == 0:
        raise InvalidAdjustment("an adjustment must add or remove at least one point")
    if abs(points) > MAX_ADJUSTMENT_POINTS:
        raise InvalidAdjustment(f"adjustments are limited to {MAX_ADJUSTMENT_POINTS} points at a time")
    if not reason.strip():
        raise InvalidAdjustment("say why the points are adjusted")
    account = (await lock_accounts(session, [customer.id]))[customer.id]
    await _lapse_expired(session, account, now=now)
    if points > 0:
        entry = _credit(
            session,
            account,
            kind=EntryKind.adjust,
            points=points,
            now=now,
            actor=actor,
            reason=reason.strip(),
        )
    else:
        if account.points + points < 0:
            raise InsufficientPoints(
                f"the balance is {account.points} points; removing {-points} would take it below zero"
            )
        await _consume(session, account, points=-points)
        entry = LoyaltyEntry(
            customer_id=customer.id,
            kind=EntryKind.adjust,
            points=points,
            actor=actor,
            reason=reason.strip(),
        )
        session.add(entry)
        account.points += points
    await session.flush()
    return entry


async def expire_points(session: AsyncSession, *, now: datetime, customer_id: uuid.UUID | None = None) -> int:
    """Lapse points 12 months after they were credited; returns how many points expired."""
    query = (
        select(LoyaltyEntry.customer_id)
        .where(LoyaltyEntry.remaining > 0, LoyaltyEntry.expires_at <= now)
        .distinct()
    )
    if customer_id is not None:
        query = query.where(LoyaltyEntry.customer_id == customer_id)
    ids = list(await session.scalars(query))
    if not ids:
        return 0
    accounts = await lock_accounts(session, ids)
    expired = 0
    for account in accounts.values():
        expired += await _lapse_expired(session, account, now=now)
    return expired


async def recompute_tier(session: AsyncSession, *, customer_id: uuid.UUID) -> Tier:
    """Set the tier from lifetime points (e.g. after `merge_customers` moved points)."""
    account = (await lock_accounts(session, [customer_id]))[customer_id]
    account.tier = tier_for(account.lifetime_points)
    await session.flush()
    return account.tier


# -- readers -------------------------------------------------------------------------


async def get_balance(session: AsyncSession, *, customer_id: uuid.UUID, now: datetime) -> Balance:
    """Spendable points as of `now` (lapsed points excluded even before the sweep runs)."""
    account = await session.get(LoyaltyAccount, customer_id)
    if account is None:
        return Balance(points=0, lifetime_points=0, tier=Tier.bronze, expiring_soon=0)
    remaining = func.coalesce(func.sum(LoyaltyEntry.remaining), 0)
    mine = (LoyaltyEntry.customer_id == customer_id, LoyaltyEntry.remaining > 0)
    lapsed = await session.scalar(select(remaining).where(*mine, LoyaltyEntry.expires_at <= now))
    soon = await session.scalar(
        select(remaining).where(
            *mine, LoyaltyEntry.expires_at > now, LoyaltyEntry.expires_at <= now + EXPIRY_NOTICE
        )
    )
    return Balance(
        points=max(0, account.points - int(lapsed or 0)),
        lifetime_points=account.lifetime_points,
        tier=account.tier,
        expiring_soon=int(soon or 0),
    )


async def list_history(
    session: AsyncSession, *, customer_id: uuid.UUID, limit: int, offset: int
) -> list[LoyaltyEntry]:
    """Ledger lines, newest first."""
    rows = await session.scalars(
        select(LoyaltyEntry)
        .where(LoyaltyEntry.customer_id == customer_id)
        .order_by(LoyaltyEntry.created_at.desc(), LoyaltyEntry.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows)
