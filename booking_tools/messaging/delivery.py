"""Delivery reports from providers, applied to the outbox as a monotonic state machine.

queued < sending < sent < delivered | undelivered | failed. A report never moves a
text backwards or from one final state to another, so callbacks that arrive late or
out of order (protocols.md 2.4) change nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.customers.models import Customer
from booking_tools.messaging.models import MessageStatus, OutboundMessage

RANK: dict[MessageStatus, int] = {
    MessageStatus.queued: 0,
    MessageStatus.sending: 1,
    MessageStatus.sent: 2,
    MessageStatus.delivered: 3,
    MessageStatus.undelivered: 3,
    MessageStatus.failed: 3,
}

# Provider words, lower-cased: Twilio `MessageStatus` and RingCentral `messageStatus`.
PROVIDER_STATUS: dict[str, MessageStatus] = {
    "accepted": MessageStatus.queued,
    "scheduled": MessageStatus.queued,
    "queued": MessageStatus.queued,
    "sending": MessageStatus.sending,
    "sent": MessageStatus.sent,
    "delivered": MessageStatus.delivered,
    "read": MessageStatus.delivered,
    "partially_delivered": MessageStatus.delivered,
    "undelivered": MessageStatus.undelivered,
    "deliveryfailed": MessageStatus.undelivered,
    "failed": MessageStatus.failed,
    "sendingfailed": MessageStatus.failed,
    "canceled": MessageStatus.failed,
}

OPTED_OUT_ERROR_CODES = frozenset({"21610"})  # Twilio: unsubscribed recipient


def delivery_status(provider_status: str) -> MessageStatus | None:
    """Our status for a provider's status word, or None for words we don't track."""
    return PROVIDER_STATUS.get(provider_status.strip().lower())


async def opt_out_customer(session: AsyncSession, *, customer_id: uuid.UUID | None, now: datetime) -> None:
    """Record that the customer opted out (keeps an earlier opt-out time)."""
    if customer_id is None:
        return
    await session.execute(
        update(Customer)
        .where(Customer.id == customer_id, Customer.opted_out_at.is_(None))
        .values(opted_out_at=now)
    )


async def apply_delivery_status(
    session: AsyncSession,
    *,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    now: datetime,
) -> OutboundMessage | None:
    """Move a sent text forward to a provider-reported status.

    Returns the message if its status changed; unknown messages, unknown words and
    stale or out-of-order reports return None and change nothing. An undelivered or
    failed report with Twilio 21610 also opts the customer out.
    """
    new_status = delivery_status(status)
    if new_status is None:
        return None
    message = await session.scalar(
        select(OutboundMessage)
        .where(OutboundMessage.provider_message_id == provider_message_id)
        .with_for_update()
    )
    if message is None or message.status not in RANK:
        return None
    if RANK[new_status] <= RANK[message.status]:
        return None
    message.status = new_status
    message.status_updated_at = now
    if error_code and new_status in (MessageStatus.undelivered, MessageStatus.failed):
        message.error = f"{message.provider} delivery error {error_code}"
        if error_code in OPTED_OUT_ERROR_CODES:
            await opt_out_customer(session, customer_id=message.customer_id, now=now)
    await session.flush()
    return message
