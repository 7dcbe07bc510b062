"""Outbox jobs: `send_text` sends one queued text at most once; `sweep_outbox` (cron)
re-enqueues texts whose job never ran.

A text is claimed (queued -> sending) in its own short transaction before the provider
is called, and the outcome is recorded in another, so a duplicate job finds it no
longer queued and sends nothing. Jobs find the app as ctx["app"] and the senders from
`build_senders` as ctx["app"].extras["sms_senders"].
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from arq import Retry
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.customers.models import Customer
from booking_tools.messaging.delivery import opt_out_customer
from booking_tools.messaging.models import MessageStatus, OutboundMessage
from booking_tools.messaging.providers import (
    PermanentSendError,
    RecipientOptedOut,
    SendError,
    SmsSender,
    TransientSendError,
)
from booking_tools.messaging.service import SEND_JOB, blocked_reason
from hibachi.context import AppContext, utcnow
from hibachi.db import unit_of_work

MAX_ATTEMPTS = 5
SWEEP_AFTER = timedelta(seconds=30)
SWEEP_BATCH = 500
STUCK_SENDING_AFTER = timedelta(minutes=10)
STATUS_CALLBACK_PATHS = {"twilio": "/twilio/status"}
ERROR_LENGTH = 500  # OutboundMessage.error column size


def retry_delay(attempts: int) -> timedelta:
    """Backoff before the next try after `attempts` failed ones: 15 s, 30 s, 60 s, 120 s."""
    return timedelta(seconds=15 * 2 ** max(attempts - 1, 0))


def job_id(message_id: uuid.UUID | str) -> str:
    """The arq job id for a text; one live job per text."""
    return f"text:{message_id}"


async def send_text(ctx: dict[str, Any], message_id: str) -> str:
    """Send one outbox text if it is still queued; returns what happened.

    Permanent provider errors fail the text (21610 also opts the customer out);
    transient ones put it back to `queued` and raise `arq.Retry` until MAX_ATTEMPTS.
    """
    app: AppContext = ctx["app"]
    senders: dict[str, SmsSender] = app.extras["sms_senders"]
    key = uuid.UUID(message_id)

    async with unit_of_work(app.sessions) as session:
        message = await session.scalar(
            select(OutboundMessage).where(OutboundMessage.id == key).with_for_update(skip_locked=True)
        )
        if message is None:
            return "skipped: missing or claimed by another worker"
        if message.status is not MessageStatus.queued:
            return f"skipped: already {message.status.value}"
        now = utcnow()
        reason = await _blocked_reason(session, message)
        if reason is not None:
            _finish(message, MessageStatus.blocked, error=reason, now=now)
            return "blocked"
        sender = senders.get(message.provider)
        if sender is None:
            error = f"no SMS sender configured for provider {message.provider!r}"
            _finish(message, MessageStatus.failed, error=error, now=now)
            return "failed"
        message.status = MessageStatus.sending
        message.attempts += 1
        message.status_updated_at = now
        attempt = message.attempts
        from_phone, to_phone, body = message.from_phone, message.to_phone, message.body

    path = STATUS_CALLBACK_PATHS.get(sender.provider) if sender.supports_status_callback else None
    callback = f"{app.settings.public_base_url.rstrip('/')}{path}" if path else None
    try:
        result = await sender.send(
            from_phone=from_phone, to_phone=to_phone, body=body, status_callback=callback
        )
    except RecipientOptedOut as exc:
        await _record_failure(app, key, exc, opt_out=True)
        return "failed: recipient opted out"
    except PermanentSendError as exc:
        await _record_failure(app, key, exc)
        return "failed"
    except TransientSendError as exc:
        if attempt >= MAX_ATTEMPTS:
            await _record_failure(app, key, exc)
            return f"failed after {attempt} attempts"
        async with unit_of_work(app.sessions) as session:
            message = await _locked(session, key)
            _finish(message, MessageStatus.queued, error=str(exc), now=utcnow())
        raise Retry(defer=retry_delay(attempt)) from exc
    except Exception as exc:
        # Outcome unknown (a bug, or a provider answer we could not read): record it and
        # never resend blindly, which could text the customer twice.
        async with unit_of_work(app.sessions) as session:
            message = await _locked(session, key)
            error = f"unexpected {type(exc).__name__}: {exc}"
            _finish(message, MessageStatus.failed, error=error, now=utcnow())
        raise

    async with unit_of_work(app.sessions) as session:
        message = await _locked(session, key)
        now = utcnow()
        message.provider_message_id = result.provider_message_id
        message.sent_at = now
        _finish(message, MessageStatus.sent, error=None, now=now)
    return "sent"


async def sweep_outbox(ctx: dict[str, Any]) -> int:
    """Enqueue `send_text` for texts still queued 30 s after creation; returns how many.

    The job id `text:{id}` makes this a no-op for texts whose job is still pending or
    waiting to retry. Texts left in `sending` for 10 minutes (worker killed mid-send)
    are failed, not resent: the provider may already have them.
    """
    app: AppContext = ctx["app"]
    now = utcnow()
    async with unit_of_work(app.sessions) as session:
        ids = list(
            await session.scalars(
                select(OutboundMessage.id)
                .where(
                    OutboundMessage.status == MessageStatus.queued,
                    OutboundMessage.created_at < now - SWEEP_AFTER,
                )
                .order_by(OutboundMessage.created_at)
                .limit(SWEEP_BATCH)
            )
        )
        await session.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.status == MessageStatus.sending,
                OutboundMessage.status_updated_at < now - STUCK_SENDING_AFTER,
            )
            .values(
                status=MessageStatus.failed,
                error="interrupted while sending; not resent to avoid a duplicate text",
                status_updated_at=now,
            )
        )
    enqueued = 0
    for message_id in ids:
        job = await app.queue.enqueue_job(SEND_JOB, str(message_id), _job_id=job_id(message_id))
        enqueued += job is not None
    return enqueued


async def _blocked_reason(session: AsyncSession, message: OutboundMessage) -> str | None:
    """Consent is checked again at send time: a STOP may have arrived since queueing."""
    customer = await session.get(Customer, message.customer_id) if message.customer_id else None
    return blocked_reason(customer, message.kind)


async def _locked(session: AsyncSession, key: uuid.UUID) -> OutboundMessage:
    message = await session.scalar(select(OutboundMessage).where(OutboundMessage.id == key).with_for_update())
    if message is None:
        raise LookupError(f"outbound message {key} vanished while sending")
    return message


def _finish(message: OutboundMessage, status: MessageStatus, *, error: str | None, now: datetime) -> None:
    message.status = status
    message.error = error[:ERROR_LENGTH] if error else None
    message.status_updated_at = now


async def _record_failure(app: AppContext, key: uuid.UUID, exc: SendError, *, opt_out: bool = False) -> None:
    """Mark the text failed for good (and opt the customer out on an opted-out error)."""
    async with unit_of_work(app.sessions) as session:
        message = await _locked(session, key)
        now = utcnow()
        _finish(message, MessageStatus.failed, error=str(exc), now=now)
        if opt_out:
            await opt_out_customer(session, customer_id=message.customer_id, now=now)
