"""Texts about a booking, to the customer who made it, from the location's agent number."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.bookings.models import Booking
from booking_tools.messaging.models import OutboundMessage
from booking_tools.messaging.service import queue_text


async def text_customer(
    session: AsyncSession, *, booking: Booking, template: str, body: str, dedupe_key: str
) -> OutboundMessage:
    """Queue a booking text (the outbox applies opt-out rules and de-duplicates by key)."""
    return await queue_text(
        session,
        location=booking.location,
        to_phone=booking.customer.phone,
        customer=booking.customer,
        template=template,
        body=body,
        dedupe_key=dedupe_key,
    )
