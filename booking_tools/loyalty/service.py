"""Hibachi Rewards: account + append-only ledger. (Being written; see issue 2.)"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.bookings.models import Booking
from booking_tools.customers.models import Customer


async def record_referral(session: AsyncSession, *, customer: Customer, referrer_phone: str) -> None:
    """Remember who referred a new customer (the bonus is paid on their first completed event)."""
    raise NotImplementedError


async def first_event_referral_discount(
    session: AsyncSession, *, customer: Customer, food_subtotal_cents: int
) -> int:
    """10 % off the first event of a referred customer, in cents (0 otherwise)."""
    return 0


async def return_redeemed_points(session: AsyncSession, *, booking: Booking, now: datetime) -> None:
    """Give back points redeemed on a booking that was cancelled."""


async def award_for_completed_booking(session: AsyncSession, *, booking: Booking, now: datetime) -> None:
    """Earn points for a completed event (tier multiplier) and pay any referral bonus."""
