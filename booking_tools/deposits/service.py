"""Deposits: $100 per booking, paid by link, released after 24 h, refunded or kept on cancel."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.bookings import statements as sql
from booking_tools.bookings.models import Booking, BookingStatus
from booking_tools.bookings.notify import text_customer
from booking_tools.bookings.pricing import DEPOSIT_CENTS
from booking_tools.deposits.models import Deposit, DepositStatus
from booking_tools.deposits.providers import PaymentProvider
from booking_tools.messaging import templates
from booking_tools.messaging.models import MessageKind, MessageStatus
from booking_tools.messaging.service import SEND_JOB, blocked_reason
from hibachi.db import attach_as_loaded, enqueue_after_commit
from hibachi.errors import Conflict, NotFound

DEPOSIT_TTL = timedelta(hours=24)
LIVE = (DepositStatus.pending, DepositStatus.paid)


class DepositNotFound(NotFound):
    pass


class DepositExpired(Conflict):
    status_code = 410


class DepositClosed(Conflict):
    pass


async def live_deposit(session: AsyncSession, *, booking_id: object) -> Deposit | None:
    return await session.scalar(
        select(Deposit).where(Deposit.booking_id == booking_id, Deposit.status.in_(LIVE))
    )


async def live_deposits(session: AsyncSession, *, booking_ids: list[uuid.UUID]) -> dict[uuid.UUID, Deposit]:
    """The live deposit of each of these bookings, in one query."""
    if not booking_ids:
        return {}
    rows = await session.scalars(
        select(Deposit).where(Deposit.booking_id.in_(booking_ids), Deposit.status.in_(LIVE))
    )
    return {d.booking_id: d for d in rows}


async def open_deposit(
    session: AsyncSession,
    *,
    booking: Booking,
    payments: PaymentProvider,
    now: datetime,
    new_booking: bool = False,
) -> tuple[Deposit, bool]:
    """The booking's live deposit, creating it if needed; returns (deposit, created).

    Idempotent: replays return the same deposit. Callers hold the booking row lock
    (or pass `new_booking` for a booking inserted in this transaction).
    """
    existing = None if new_booking else await live_deposit(session, booking_id=booking.id)
    if existing is not None:
        return existing, False
    if booking.status is not BookingStatus.pending_deposit:
        raise DepositClosed(f"booking {booking.code} is {booking.status.value}; no deposit is due")
    token = secrets.token_urlsafe(24)
    expires_at = now + DEPOSIT_TTL
    checkout = await payments.create_checkout(
        token=token,
        amount_cents=DEPOSIT_CENTS,
        description=f"My Hibachi deposit, booking {booking.code}",
        expires_at=expires_at,
    )
    deposit = Deposit(
        booking_id=booking.id,
        amount_cents=DEPOSIT_CENTS,
        provider=payments.name,
        provider_ref=checkout.provider_ref,
        token=token,
        payment_url=checkout.url,
        expires_at=expires_at,
    )
    session.add(deposit)
    await session.flush()
    return deposit, True


async def open_first_deposit(
    session: AsyncSession,
    *,
    booking: Booking,
    payments: PaymentProvider,
    now: datetime,
    audit_line: dict[str, Any] | None = None,
) -> Deposit:
    """Open the deposit of a booking inserted in this transaction and queue its link text.

    What `open_deposit(new_booking=True)` + `send_deposit_link` do, in one statement
    (with `audit_line`, the booking's audit line too). `booking.location` and
    `booking.customer` must be loaded.
    """
    token = secrets.token_urlsafe(24)
    expires_at = now + DEPOSIT_TTL
    checkout = await payments.create_checkout(
        token=token,
        amount_cents=DEPOSIT_CENTS,
        description=f"My Hibachi deposit, booking {booking.code}",
        expires_at=expires_at,
    )
    deposit_values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "booking_id": booking.id,
        "amount_cents": DEPOSIT_CENTS,
        "status": DepositStatus.pending,
        "provider": payments.name,
        "provider_ref": checkout.provider_ref,
        "token": token,
        "payment_url": checkout.url,
        "expires_at": expires_at,
        "paid_at": None,
        "closed_at": None,
    }
    customer, location = booking.customer, booking.location
    blocked = blocked_reason(customer, MessageKind.transactional)
    message_values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "customer_id": customer.id,
        "to_phone": customer.phone,
        "from_phone": location.agent_phone,
        "provider": location.sms_provider,
        "kind": MessageKind.transactional,
        "template": "deposit_link",
        "body": templates.deposit_link(
            code=booking.code, event_date=booking.event_date, start_time=booking.start_time, url=checkout.url
        ),
        "status": MessageStatus.blocked if blocked else MessageStatus.queued,
        "error": blocked,
        "dedupe_key": f"deposit_link:{deposit_values['id']}",
        "attempts": 0,
    }
    params = {f"deposit_{k}": v for k, v in deposit_values.items()}
    params |= {f"message_{k}": v for k, v in message_values.items()}
    if audit_line is not None:
        params |= {f"audit_{k}": v for k, v in audit_line.items()}
    stmt = sql.INSERT_DEPOSIT_AND_TEXT if audit_line is None else sql.INSERT_DEPOSIT_TEXT_AND_AUDIT
    created_at, texted = (await (await session.connection()).execute(stmt, params)).one()
    deposit = attach_as_loaded(session, Deposit(**deposit_values, created_at=created_at))
    if texted and not blocked:
        message_id = str(message_values["id"])
        enqueue_after_commit(session, SEND_JOB, message_id, job_id=f"text:{message_id}")
    return deposit


async def send_deposit_link(session: AsyncSession, *, booking: Booking, deposit: Deposit) -> None:
    """Text the payment link (once per deposit)."""
    await text_customer(
        session,
        booking=booking,
        template="deposit_link",
        body=templates.deposit_link(
            code=booking.code,
            event_date=booking.event_date,
            start_time=booking.start_time,
            url=deposit.payment_url,
        ),
        dedupe_key=f"deposit_link:{deposit.id}",
    )


async def deposit_by_token(session: AsyncSession, *, token: str, lock: bool = False) -> Deposit:
    query = select(Deposit).where(Deposit.token == token)
    if lock:
        query = query.with_for_update()
    deposit = await session.scalar(query)
    if deposit is None:
        raise DepositNotFound("no such payment link")
    return deposit


async def deposit_by_provider_ref(session: AsyncSession, *, ref: str) -> Deposit:
    deposit = await session.scalar(select(Deposit).where(Deposit.provider_ref == ref).with_for_update())
    if deposit is None:
        raise DepositNotFound(f"no deposit for checkout {ref}")
    return deposit


async def mark_paid(
    session: AsyncSession, *, deposit: Deposit, now: datetime, enforce_expiry: bool = True
) -> Booking:
    """Payment arrived: deposit paid, booking confirmed, confirmation texted. Idempotent.

    The caller holds the deposit row lock (see `deposit_by_token(lock=True)`).
    """
    from booking_tools.bookings.service import load_booking

    booking = await load_booking(session, booking_id=deposit.booking_id, lock=True)
    if deposit.status is DepositStatus.paid:
        return booking
    if deposit.status is not DepositStatus.pending:
        raise DepositClosed(f"this payment link is {deposit.status.value}")
    if enforce_expiry and now >= deposit.expires_at:
        raise DepositExpired("this payment link has expired and the slot was released")
    deposit.status = DepositStatus.paid
    deposit.paid_at = now
    booking.status = BookingStatus.confirmed
    booking.confirmed_at = now
    await text_customer(
        session,
        booking=booking,
        template="booking_confirmed",
        body=templates.booking_confirmed(
            code=booking.code, event_date=booking.event_date, start_time=booking.start_time
        ),
        dedupe_key=f"confirmed:{deposit.id}",
    )
    await session.flush()
    return booking


async def refund_late_payment(
    session: AsyncSession, *, deposit: Deposit, payments: PaymentProvider, now: datetime
) -> None:
    """Money came in after the hold was released or voided: give it back and say so."""
    from booking_tools.bookings.service import load_booking

    await payments.refund(provider_ref=deposit.provider_ref, amount_cents=deposit.amount_cents)
    deposit.status = DepositStatus.refunded
    deposit.closed_at = now
    booking = await load_booking(session, booking_id=deposit.booking_id)
    await text_customer(
        session,
        booking=booking,
        template="late_payment_refunded",
        body=templates.late_payment_refunded(code=booking.code),
        dedupe_key=f"late_refund:{deposit.id}",
    )
    await session.flush()


async def settle_on_cancel(
    session: AsyncSession,
    *,
    booking: Booking,
    keep: bool,
    payments: PaymentProvider,
    now: datetime,
) -> Deposit | None:
    """Close the booking's live deposit: refund (or keep, inside 48 h) a paid one, void a pending one."""
    deposit = await live_deposit(session, booking_id=booking.id)
    if deposit is None:
        return None
    if deposit.status is DepositStatus.pending:
        deposit.status = DepositStatus.void
    elif keep:
        deposit.status = DepositStatus.kept
    else:
        await payments.refund(provider_ref=deposit.provider_ref, amount_cents=deposit.amount_cents)
        deposit.status = DepositStatus.refunded
    deposit.closed_at = now
    await session.flush()
    return deposit


async def due_for_expiry(session: AsyncSession, *, now: datetime, limit: int = 100) -> list[Deposit]:
    """Pending deposits past their 24 h, locked (skipping rows another worker holds)."""
    return list(
        await session.scalars(
            select(Deposit)
            .where(Deposit.status == DepositStatus.pending, Deposit.expires_at <= now)
            .order_by(Deposit.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
