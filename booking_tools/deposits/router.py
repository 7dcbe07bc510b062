"""The built-in payment page (`/pay/{token}`): the embedded stand-in for Stripe Checkout."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from booking_tools.bookings.schemas import dollars
from booking_tools.bookings.service import load_booking
from booking_tools.deposits import service
from booking_tools.deposits.models import DepositStatus
from booking_tools.deposits.providers import BuiltinPayments
from booking_tools.messaging.templates import when
from hibachi.deps import NowDep, SessionDep

router = APIRouter(tags=["payments"])

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>My Hibachi deposit</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}
button{{font-size:1.1rem;padding:.6rem 1.2rem}}</style></head><body>
<h1>My Hibachi</h1><p>{body}</p></body></html>"""


def page(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(body=body), status_code=status_code)


@router.get("/pay/{token}", response_class=HTMLResponse)
async def payment_page(token: str, session: SessionDep, now: NowDep) -> HTMLResponse:
    deposit = await service.deposit_by_token(session, token=token)
    booking = await load_booking(session, booking_id=deposit.booking_id)
    summary = (
        f"Deposit of ${dollars(deposit.amount_cents):.2f} for booking {escape(booking.code)}, "
        f"{escape(when(booking.event_date, booking.start_time))}, {escape(booking.location.name)}."
    )
    if deposit.provider != BuiltinPayments.name:
        return page(f'{summary}<br><a href="{escape(deposit.payment_url)}">Pay securely here</a>.')
    if deposit.status is DepositStatus.paid:
        return page(f"{summary}<br>Paid. Your booking is confirmed.")
    if deposit.status is not DepositStatus.pending or now >= deposit.expires_at:
        return page(f"{summary}<br>This payment link is no longer valid.", status_code=410)
    return page(
        f'{summary}<form method="post"><button type="submit">Pay $'
        f"{dollars(deposit.amount_cents):.2f}</button></form>"
    )


@router.post("/pay/{token}", response_class=HTMLResponse)
async def pay(token: str, session: SessionDep, now: NowDep) -> HTMLResponse:
    """Take the payment: the deposit becomes paid and the booking confirmed (idempotent)."""
    deposit = await service.deposit_by_token(session, token=token, lock=True)
    if deposit.provider != BuiltinPayments.name:
        raise service.DepositClosed("this deposit is paid through its checkout link, not this page")
    booking = await service.mark_paid(session, deposit=deposit, now=now)
    return page(f"Thank you! Booking {escape(booking.code)} is confirmed.")
