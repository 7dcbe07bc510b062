"""Hand-off to staff: a `Transfer` row, a summary text to the staff line, and `Effect.transfer`.

During staff hours the channel connects the customer (voice dials the staff line);
outside them the agent takes a message and promises a call back by 10 am.
"""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from agent.models import Transfer, TransferOutcome, TransferReason
from agent.tools.base import Effect, ToolContext, ToolResult
from agent.tools.common import make_tool, redact_cards, say_time
from agent.tools.identity import caller_phone
from agent.tools.schemas import TransferToStaff
from booking_tools.locations.models import Location
from booking_tools.locations.service import get_location, staff_available, staff_hours
from booking_tools.messaging.models import MessageKind
from booking_tools.messaging.service import queue_text
from hibachi.db import unit_of_work

CALLBACK_BY = time(10, 0)
CONNECTED = "I'm passing you to our team now; they have a summary of our conversation."
REASON_WORDS = {
    TransferReason.requested: "asked for a person",
    TransferReason.large_party: "large party",
    TransferReason.complaint: "complaint",
    TransferReason.negative_sentiment: "unhappy customer",
    TransferReason.cannot_help: "the agent couldn't help",
    TransferReason.dtmf: "pressed 0 for staff",
}


def callback_deadline(location: Location, now: datetime) -> datetime:
    """10 am the next morning (today's, when it is before opening)."""
    tz = ZoneInfo(location.timezone)
    local = now.astimezone(tz)
    day = local.date() if local.time() < location.staff_open else local.date() + timedelta(days=1)
    return datetime.combine(day, CALLBACK_BY, tzinfo=tz)


def staff_text(
    ctx: ToolContext, *, reason: TransferReason, summary: str, callback_by: datetime | None
) -> str:
    who = caller_phone(ctx) or ctx.customer_phone or "a caller without caller ID"
    head = f"My Hibachi agent: {REASON_WORDS[reason]}, {ctx.channel} from {who}."
    if callback_by is None:
        return f"{head} Connecting them now. {summary}"
    by = f"{say_time(CALLBACK_BY)} {callback_by:%a %b} {callback_by.day}"
    return f"{head} After hours: please call back by {by}. {summary}"


async def run_transfer_to_staff(ctx: ToolContext, args: TransferToStaff) -> ToolResult:
    summary = redact_cards(args.summary.strip()) or "No summary."
    async with unit_of_work(ctx.app.sessions, queue=ctx.app.queue) as session:
        location = await get_location(session, slug=ctx.location_slug)
        available = staff_available(location, now=ctx.now)
        callback_by = None if available else callback_deadline(location, ctx.now)
        # A repeated call (same reason and summary) is the same hand-off: staff get one text.
        transfer = await session.scalar(
            select(Transfer).where(
                Transfer.conversation_id == ctx.conversation_id,
                Transfer.reason == args.reason,
                Transfer.summary == summary,
            )
        )
        if transfer is None:
            transfer = Transfer(
                id=uuid.uuid4(),
                conversation_id=ctx.conversation_id,
                reason=args.reason,
                outcome=TransferOutcome.connected if available else TransferOutcome.message_taken,
                summary=summary,
                staff_phone=location.staff_phone,
            )
            text = await queue_text(
                session,
                location=location,
                to_phone=location.staff_phone,
                body=staff_text(ctx, reason=args.reason, summary=summary, callback_by=callback_by),
                template="staff_transfer",
                kind=MessageKind.staff,
                dedupe_key=f"transfer:{transfer.id}",
            )
            transfer.outbound_message_id = text.id
            session.add(transfer)
            await session.flush()
    data: dict[str, object] = {
        "transfer_id": str(transfer.id),
        "outcome": transfer.outcome.value,
        "staff_phone": transfer.staff_phone,
        "reason": transfer.reason.value,
        "staff_hours": staff_hours(location),
    }
    if transfer.outcome is TransferOutcome.connected:
        message = CONNECTED
    else:
        callback_by = callback_by or callback_deadline(location, ctx.now)
        data["callback_by"] = callback_by.isoformat()
        local_now = ctx.now.astimezone(callback_by.tzinfo)
        day = "today" if callback_by.date() == local_now.date() else "tomorrow"
        message = (
            f"Our team is available {say_time(location.staff_open)} to {say_time(location.staff_close)}. "
            f"I've passed your message on and someone will call you back by {say_time(CALLBACK_BY)} {day}."
        )
    # Only a live hand-off makes the channel dial staff; after hours the message is taken.
    effect = Effect.transfer if transfer.outcome is TransferOutcome.connected else None
    return ToolResult(ok=True, message=message, data=data, effect=effect)


transfer_to_staff = make_tool(
    name="transfer_to_staff",
    description=(
        "Hand the customer to a person: texts staff your summary and the customer's number. Use it "
        "when the customer asks for a person, for more than 60 guests, corporate events or weddings, "
        "complaints, point adjustments, or anything you can't do. During staff hours (9 am to 9 pm) "
        "the customer is connected; outside them staff call back by 10 am. Say the returned message "
        "and nothing after it. data: transfer_id, outcome ('connected' or 'message_taken'), "
        "staff_phone, reason, staff_hours, callback_by (ISO time, only when a message was taken)."
    ),
    args=TransferToStaff,
    run=run_transfer_to_staff,
)
