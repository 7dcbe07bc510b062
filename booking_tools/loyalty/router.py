from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from booking_tools.admin.service import audit
from booking_tools.customers.models import Customer
from booking_tools.customers.service import get_customer
from booking_tools.loyalty import service
from booking_tools.loyalty.schemas import (
    AdjustmentIn,
    AdjustmentOut,
    LedgerLineOut,
    LoyaltyHistory,
    LoyaltyOut,
)
from hibachi.deps import AnyRole, NowDep, SessionDep, StaffRole

router = APIRouter(prefix="/v1/customers", tags=["loyalty"])


async def holder(session: SessionDep, phone: str) -> Customer:
    """The customer (any phone format; 404 if unknown), following merges to the survivor."""
    return await service.account_holder(session, customer=await get_customer(session, phone=phone))


def loyalty_out(customer: Customer, balance: service.Balance) -> LoyaltyOut:
    return LoyaltyOut(
        phone=customer.phone,
        points=balance.points,
        tier=balance.tier,
        lifetime_points=balance.lifetime_points,
        next_tier=balance.next_tier,
        points_to_next_tier=balance.points_to_next_tier,
        expiring_within_30_days=balance.expiring_soon,
    )


def snapshot(balance: service.Balance) -> dict[str, Any]:
    return {"points": balance.points, "lifetime_points": balance.lifetime_points, "tier": balance.tier.value}


@router.get("/{phone}/loyalty", response_model=LoyaltyOut)
async def get_loyalty(phone: str, session: SessionDep, _: AnyRole, now: NowDep) -> LoyaltyOut:
    """Points, tier, progress to the next tier and points expiring in the next 30 days."""
    customer = await holder(session, phone)
    return loyalty_out(customer, await service.get_balance(session, customer_id=customer.id, now=now))


@router.get("/{phone}/loyalty/history", response_model=LoyaltyHistory)
async def get_history(
    phone: str,
    session: SessionDep,
    _: AnyRole,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> LoyaltyHistory:
    """The points ledger, newest first: earned, used, expired, referral, adjusted, returned."""
    customer = await holder(session, phone)
    rows = await service.list_history(session, customer_id=customer.id, limit=limit, offset=offset)
    return LoyaltyHistory(items=[LedgerLineOut.model_validate(r) for r in rows], limit=limit, offset=offset)


@router.post("/{phone}/loyalty/adjustments", response_model=AdjustmentOut, status_code=201)
async def adjust(
    phone: str, data: AdjustmentIn, session: SessionDep, who: StaffRole, now: NowDep
) -> AdjustmentOut:
    """Staff correction of a balance (audited). Removals never take it below zero (409)."""
    customer = await holder(session, phone)
    await service.lock_accounts(session, [customer.id])  # before/after are exact under the lock
    before = await service.get_balance(session, customer_id=customer.id, now=now)
    entry = await service.adjust_points(
        session, customer=customer, points=data.points, actor=who.actor, reason=data.reason, now=now
    )
    after = await service.get_balance(session, customer_id=customer.id, now=now)
    await audit(
        session,
        actor=who.actor,
        action="loyalty.adjust",
        entity="customer",
        entity_id=customer.id,
        before=snapshot(before),
        after={**snapshot(after), "adjustment": data.points, "reason": data.reason},
    )
    return AdjustmentOut(entry=LedgerLineOut.model_validate(entry), balance=loyalty_out(customer, after))
