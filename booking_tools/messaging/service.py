"""The text outbox: business code queues texts in its own transaction; a job sends them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.customers.models import Customer
from booking_tools.locations.models import Location
from booking_tools.messaging.models import MessageKind, MessageStatus, OutboundMessage
from hibachi.db import enqueue_after_commit

SEND_JOB = "send_text"


def blocked_reason(customer: Customer | None, kind: MessageKind) -> str | None:
    """Why this text must not go to this customer, or None."""
    if kind is MessageKind.staff or customer is None:
        return None
    if customer.opted_out:
        return "recipient opted out (STOP)"
    if kind is MessageKind.marketing and not customer.sms_marketing:
        return "no marketing consent"
    if kind is MessageKind.transactional and not customer.sms_transactional:
        return "recipient turned off booking texts"
    return None


async def queue_text(
    session: AsyncSession,
    *,
    location: Location,
    to_phone: str,
    body: str,
    template: str,
    kind: MessageKind = MessageKind.transactional,
    customer: Customer | None = None,
    dedupe_key: str | None = None,
) -> OutboundMessage:
    """Write a text to the outbox (sent after commit), from the location's agent number.

    Opted-out or non-consenting recipients get a `blocked` row and nothing is sent.
    A repeated `dedupe_key` returns the first message instead of queueing another.
    """
    reason = blocked_reason(customer, kind)
    values = {
        "id": uuid.uuid4(),
        "customer_id": customer.id if customer else None,
        "to_phone": to_phone,
        "from_phone": location.agent_phone,
        "provider": location.sms_provider,
        "kind": kind,
        "template": template,
        "body": body,
        "status": MessageStatus.blocked if reason else MessageStatus.queued,
        "error": reason,
        "dedupe_key": dedupe_key,
    }
    message: OutboundMessage | None = await session.scalar(
        select(OutboundMessage).from_statement(
            insert(OutboundMessage)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(OutboundMessage)
        )
    )
    if message is None:
        existing = await session.scalar(
            select(OutboundMessage).where(OutboundMessage.dedupe_key == dedupe_key)
        )
        assert existing is not None  # the conflict was on this key
        return existing
    if message.status is MessageStatus.queued:
        enqueue_after_commit(session, SEND_JOB, str(message.id), job_id=f"text:{message.id}")
    return message


async def list_messages(
    session: AsyncSession, *, phone: str | None, since: datetime | None, limit: int, offset: int
) -> list[OutboundMessage]:
    query = select(OutboundMessage).order_by(OutboundMessage.created_at.desc(), OutboundMessage.id)
    if phone:
        query = query.where(OutboundMessage.to_phone == phone)
    if since:
        query = query.where(OutboundMessage.created_at >= since)
    return list(await session.scalars(query.limit(limit).offset(offset)))
