"""Stripe's side of deposits: the signed webhook that confirms bookings, and the return page.

Only a verified `checkout.session.completed` (or `async_payment_succeeded`) event marks a
deposit paid; the customer's redirect back to `/stripe/return` just shows where things stand.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

import stripe
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.deposits import service
from booking_tools.deposits.models import Deposit, DepositStatus
from booking_tools.deposits.providers import PaymentProvider
from booking_tools.deposits.router import page
from hibachi.deps import CtxDep, NowDep, SessionDep
from hibachi.errors import DomainError

router = APIRouter(tags=["payments"])

PAID_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})


class InvalidSignature(DomainError):
    status_code = 400


class InvalidPayload(DomainError):
    status_code = 400


def verified_event(payload: bytes, signature: str | None, secret: str | None) -> stripe.Event:
    """The event if `Stripe-Signature` proves Stripe sent `payload` (recently); else a 400."""
    try:
        event: stripe.Event = stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature(exc.user_message or "the Stripe-Signature header does not match") from exc
    except ValueError as exc:  # signed, but not UTF-8 JSON
        raise InvalidPayload("the body is not a Stripe event") from exc
    return event


@router.post("/stripe/webhook")
async def stripe_webhook(request: Request, ctx: CtxDep, session: SessionDep, now: NowDep) -> dict[str, Any]:
    """Stripe events. Replays are harmless: marking a deposit paid is idempotent."""
    event = verified_event(
        await request.body(), request.headers.get("stripe-signature"), ctx.settings.stripe_webhook_secret
    )
    checkout = event.data.object.to_dict()
    if event.type in PAID_EVENTS:
        await confirm_paid_checkout(session, checkout=checkout, payments=ctx.extras["payments"], now=now)
    # checkout.session.expired needs nothing: our own 24 h job releases the booking.
    # Other types are acknowledged so Stripe stops resending them.
    return {"received": True}


async def confirm_paid_checkout(
    session: AsyncSession, *, checkout: dict[str, Any], payments: PaymentProvider, now: datetime
) -> None:
    """Mark the checkout's deposit paid (confirming the booking) once the money is in.

    Money that arrives after the hold was released (or the booking cancelled) is
    refunded at once, and the customer is told, instead of failing the webhook forever.
    """
    if checkout.get("payment_status") != "paid":
        return  # a delayed method (bank debit) is still processing; async_payment_succeeded follows
    if "deposit_token" not in (checkout.get("metadata") or {}):
        return  # a checkout some other integration on this Stripe account created
    deposit = await service.deposit_by_provider_ref(session, ref=str(checkout["id"]))
    if deposit.status in (DepositStatus.pending, DepositStatus.paid):
        # Stripe only takes payment inside the checkout's window, which ends before ours;
        # a late webhook for a still-held booking is honoured.
        await service.mark_paid(session, deposit=deposit, now=now, enforce_expiry=False)
    elif deposit.status in (DepositStatus.expired, DepositStatus.void):
        await service.refund_late_payment(session, deposit=deposit, payments=payments, now=now)


@router.get("/stripe/return", response_class=HTMLResponse, include_in_schema=False)
async def checkout_return(session: SessionDep, now: NowDep, session_id: str | None = None) -> HTMLResponse:
    """Where Checkout sends the customer back; it shows the state, it never changes it."""
    deposit = None
    if session_id is not None:
        deposit = await session.scalar(select(Deposit).where(Deposit.provider_ref == session_id))
    if deposit is None:
        return page("No payment was taken. You can still pay with the link we texted you.")
    if deposit.status is DepositStatus.paid:
        return page("Paid. Your booking is confirmed.")
    if deposit.status is DepositStatus.pending and now < deposit.expires_at:
        return page(
            "Thank you! We are confirming your payment; your confirmation text is on its way. "
            f'If you did not finish paying, <a href="{escape(deposit.payment_url)}">pay the deposit</a>.'
        )
    return page("This payment link is no longer valid.", status_code=410)
