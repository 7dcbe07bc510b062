"""Reminders: text each confirmed booking 24 hours and 1 hour before its event.

The `reminders` row, unique on (booking_id, kind), is the claim: a worker inserts it
with ON CONFLICT and queues the text only when its insert won, so a reminder is never
sent twice, even with two workers sweeping at once. The row remembers which start it
was for (`due_at`): a booking moved to another time is claimed (and reminded) again.
Opted-out customers get the row (outcome `skipped_opt_out`) and a `blocked` outbox
row, and no text goes out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime, case, exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import contains_eager

from booking_tools.bookings.models import Booking, BookingStatus
from booking_tools.locations.models import Location
from booking_tools.messaging import templates
from booking_tools.messaging.models import MessageStatus
from booking_tools.messaging.service import queue_text
from booking_tools.reminders.models import Reminder

LEADS = {"24h": timedelta(hours=24), "1h": timedelta(hours=1)}
BATCH = 500


@dataclass(frozen=True, slots=True)
class DueReminder:
    booking: Booking
    kind: str
    due_at: datetime


async def due_reminders(session: AsyncSession, *, now: datetime, limit: int = BATCH) -> list[DueReminder]:
    """Confirmed bookings starting within 24 h whose current reminder isn't claimed yet.

    One query. The kind is "1h" within the last hour before the start, else "24h"; a
    reminder claimed for an earlier start (the booking was moved) doesn't count.
    """
    # The start as timestamptz in the location's zone: the SQL twin of rules.event_start.
    starts_at = func.timezone(
        Location.timezone, Booking.event_date + Booking.start_time, type_=DateTime(timezone=True)
    )
    last_hour = starts_at <= now + LEADS["1h"]
    kind = case((last_hour, "1h"), else_="24h")
    due_at = starts_at - case((last_hour, LEADS["1h"]), else_=LEADS["24h"])
    claimed = exists().where(
        Reminder.booking_id == Booking.id, Reminder.kind == kind, Reminder.due_at == due_at
    )
    rows = await session.execute(
        select(Booking, kind, due_at)
        .join(Booking.location)
        .join(Booking.customer)
        .options(contains_eager(Booking.location), contains_eager(Booking.customer))
        .where(
            Booking.status == BookingStatus.confirmed,
            # Bounds the scan by date whatever the zone (offsets are within +-14 h).
            Booking.event_date.between((now - timedelta(days=1)).date(), (now + timedelta(days=2)).date()),
            starts_at > now,
            starts_at <= now + LEADS["24h"],
            ~claimed,
        )
        .order_by(starts_at, Booking.id)
        .limit(limit)
    )
    return [DueReminder(booking=b, kind=k, due_at=d) for b, k, d in rows]


async def _claim(
    session: AsyncSession, *, booking_id: uuid.UUID, kind: str, due_at: datetime
) -> Reminder | None:
    """Take the (booking, kind) row for this `due_at`; None when another worker holds it.

    A row left from an earlier start of a moved booking is taken over (re-armed).
    """
    stmt = insert(Reminder).values(
        id=uuid.uuid4(), booking_id=booking_id, kind=kind, outcome="queued", due_at=due_at
    )
    result = await session.scalars(
        stmt.on_conflict_do_update(
            constraint="uq_reminders_booking_kind",
            set_={"due_at": stmt.excluded.due_at, "outcome": "queued", "message_id": None},
            where=Reminder.due_at != stmt.excluded.due_at,
        )
        .returning(Reminder)
        .execution_options(populate_existing=True)
    )
    return result.one_or_none()


async def dispatch_due_reminders(session: AsyncSession, *, now: datetime) -> list[Reminder]:
    """Claim and queue every reminder due at `now`; returns the reminders this call claimed."""
    claimed: list[Reminder] = []
    for due in await due_reminders(session, now=now):
        booking = due.booking
        reminder = await _claim(session, booking_id=booking.id, kind=due.kind, due_at=due.due_at)
        if reminder is None:
            continue
        message = await queue_text(
            session,
            location=booking.location,
            to_phone=booking.customer.phone,
            customer=booking.customer,
            template="reminder",
            body=templates.reminder(
                code=booking.code,
                event_date=booking.event_date,
                start_time=booking.start_time,
                kind=due.kind,
            ),
            dedupe_key=f"reminder:{booking.id}:{due.kind}:{due.due_at.astimezone(UTC):%Y%m%dT%H%M}",
        )
        reminder.message_id = message.id
        reminder.outcome = "skipped_opt_out" if message.status is MessageStatus.blocked else "queued"
        claimed.append(reminder)
    await session.flush()
    return claimed


async def list_reminders(session: AsyncSession, *, booking_id: uuid.UUID) -> list[Reminder]:
    """A booking's reminders, earliest first."""
    return list(
        await session.scalars(
            select(Reminder).where(Reminder.booking_id == booking_id).order_by(Reminder.due_at, Reminder.id)
        )
    )
