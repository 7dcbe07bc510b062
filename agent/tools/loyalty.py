"""Hibachi Rewards: the caller's own points balance (read only)."""

from __future__ import annotations

from typing import Any

from agent.tools.base import ToolContext, ToolResult
from agent.tools.common import make_tool, plural, say_money
from agent.tools.identity import caller_phone
from agent.tools.schemas import GetLoyalty
from booking_tools.bookings import pricing
from booking_tools.customers.service import find_customer
from booking_tools.loyalty import service as loyalty
from booking_tools.loyalty.models import Tier
from hibachi.db import unit_of_work

HISTORY_LINES = 5
NO_POINTS = loyalty.Balance(points=0, lifetime_points=0, tier=Tier.bronze, expiring_soon=0)


async def run_get_loyalty(ctx: ToolContext, args: GetLoyalty) -> ToolResult:
    phone = caller_phone(ctx)
    history: list[dict[str, Any]] = []
    balance = NO_POINTS
    async with unit_of_work(ctx.app.sessions) as session:
        customer = await find_customer(session, phone=phone) if phone else None
        if customer is not None:
            holder = await loyalty.account_holder(session, customer=customer)
            balance = await loyalty.get_balance(session, customer_id=holder.id, now=ctx.now)
            if args.include_history:
                lines = await loyalty.list_history(
                    session, customer_id=holder.id, limit=HISTORY_LINES, offset=0
                )
                history = [
                    {
                        "kind": line.kind.value,
                        "points": line.points,
                        "reason": line.reason,
                        "date": line.created_at.date().isoformat(),
                        "expires_at": line.expires_at.isoformat() if line.expires_at else None,
                    }
                    for line in lines
                ]
    worth = pricing.redeem_value(balance.points)
    data: dict[str, Any] = {
        "points": balance.points,
        "tier": balance.tier.value,
        "lifetime_points": balance.lifetime_points,
        "next_tier": balance.next_tier.value if balance.next_tier else None,
        "points_to_next_tier": balance.points_to_next_tier,
        "expiring_within_30_days": balance.expiring_soon,
        "redeemable_value": worth / 100,
        "history": history,
    }
    if balance.points == 0 and balance.lifetime_points == 0:
        message = (
            "There are no Hibachi Rewards points on this number yet. You earn a point for every dollar "
            "of food on each completed event."
        )
        return ToolResult(ok=True, message=message, data=data)
    message = f"You have {plural(balance.points, 'point')} at {balance.tier.value} tier"
    message += f", worth {say_money(worth)} off a booking." if worth else "."
    if balance.next_tier is not None and balance.points_to_next_tier:
        needed = plural(balance.points_to_next_tier, "more lifetime point")
        message += f" You need {needed} to reach {balance.next_tier.value}."
    if balance.expiring_soon:
        message += f" Use them soon: {plural(balance.expiring_soon, 'point')} will expire within 30 days."
    return ToolResult(ok=True, message=message, data=data)


get_loyalty = make_tool(
    name="get_loyalty",
    description=(
        "The Hibachi Rewards points, tier and progress of the phone number of this conversation (and, "
        "with include_history, its latest point changes). Use it when the customer asks about their "
        "points. It only reads: callers can never add or change points, and you must not promise "
        "any; only staff can adjust points (offer transfer_to_staff). It never shows another "
        "person's points. 100 points = $10 off, at most half the food. data: points, tier, "
        "lifetime_points, next_tier, points_to_next_tier, expiring_within_30_days, redeemable_value "
        "(dollars), history [{kind, points, reason, date, expires_at}]."
    ),
    args=GetLoyalty,
    run=run_get_loyalty,
)
