"""Calls seen through RingCentral telephony-session events, logged as voice conversations.

One conversation per telephony session (`external_id`). Events are applied in
`sequence` order: a repeated or older event changes nothing but may add facts it alone
carries (a recording id, that the call was answered). Decisions taken here, after the
transaction commits:

- an inbound call ringing on a location's staff line while staff are away (by the
  event's own time) is forwarded at once to the location's agent number;
- in hours, a check runs `UNANSWERED_AFTER` later and forwards it if still ringing;
- a finished call gets its recording transcribed and analysed (`agent.recordings`).

Call facts live in `Conversation.call_details` (see `CallDetails` keys below).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from agent.brain import Channel
from agent.models import Conversation, ConversationStatus
from booking_tools.customers.phone import to_e164
from booking_tools.locations.models import Location
from booking_tools.locations.service import staff_available
from hibachi.db import after_commit
from telephony.ringcentral.sessions import ENDED, RINGING, Party, SessionEvent

PROVIDER = "ringcentral"
# A call ringing this long on the staff line in hours goes to the agent.
UNANSWERED_AFTER = timedelta(seconds=20)
FORWARD_JOB = "forward_ringing_call"
RECORDING_JOB = "analyse_call_recording"


class ForwardReason:
    after_hours = "after_hours"
    unanswered = "unanswered"


@dataclass(slots=True, frozen=True)
class CallUpdate:
    """What one event did to its call."""

    conversation_id: uuid.UUID
    telephony_session_id: str
    applied: bool  # False: a repeat or an older event (only facts were merged)
    status: str
    forward: str | None = None  # a ForwardReason when a forward was scheduled now
    check_unanswered: bool = False
    finished: bool = False


def forward_job_id(telephony_session_id: str) -> str:
    return f"rc-forward:{telephony_session_id}"


def unanswered_job_id(telephony_session_id: str) -> str:
    return f"rc-unanswered:{telephony_session_id}"


def recording_job_id(telephony_session_id: str) -> str:
    return f"rc-recording:{telephony_session_id}"


async def _location_for_number(session: AsyncSession, phone: str) -> Location | None:
    return await session.scalar(
        select(Location).where((Location.staff_phone == phone) | (Location.agent_phone == phone))
    )


async def _our_party(session: AsyncSession, event: SessionEvent) -> tuple[Party, Location, str, str] | None:
    """The party on one of our numbers: (party, location, our number, customer number)."""
    for party in event.parties:
        inbound = party.direction != "Outbound"
        ours, theirs = (party.to_phone, party.from_phone) if inbound else (party.from_phone, party.to_phone)
        if not ours or not theirs:
            continue
        ours, theirs = to_e164(ours), to_e164(theirs)
        location = await _location_for_number(session, ours)
        if location is not None:
            return party, location, ours, theirs
    return None


async def record_session_event(
    session: AsyncSession, event: SessionEvent, *, queue: Any = None
) -> CallUpdate | None:
    """Apply one session event to its conversation; None when no party is on our numbers.

    The caller owns the transaction; jobs are enqueued on `queue` after it commits.
    """
    found = await _our_party(session, event)
    if found is None:
        return None
    party, location, our_phone, customer_phone = found
    sid = event.telephony_session_id
    # Serialise events of one session so concurrent deliveries make one conversation.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"rc-call:{sid}"}
    )
    conversation = await session.scalar(select(Conversation).where(Conversation.external_id == sid))
    if conversation is None:
        conversation = Conversation(
            channel=Channel.voice,
            provider=PROVIDER,
            customer_phone=customer_phone,
            agent_phone=our_phone,
            location_slug=location.slug,
            external_id=sid,
            last_activity_at=event.event_time,
            call_details={
                "sequence": -1,
                "direction": party.direction,
                "line": "staff" if our_phone == location.staff_phone else "agent",
                "started_at": event.event_time.isoformat(),
            },
        )
        session.add(conversation)
    details = dict(conversation.call_details)
    recordings = list(details.get("recordings", []))
    recordings += [r for r in party.recording_ids if r not in recordings]
    details["recordings"] = recordings
    if party.status == "Answered":
        details["answered"] = True
    applied = event.sequence > int(details.get("sequence", -1))
    update = CallUpdate(conversation.id, sid, applied=applied, status=str(details.get("status", "")))
    if applied:
        details.update(sequence=event.sequence, status=party.status, party_id=party.id)
        if party.reason:
            details["reason"] = party.reason
        if party.missed_call:
            details["missed"] = True
        conversation.last_activity_at = max(conversation.last_activity_at, event.event_time)
        update = _decide(conversation, details, party, location, event.event_time)
        if update.finished:
            conversation.status = ConversationStatus.closed
            conversation.ended_at = event.event_time
            details["ended_at"] = event.event_time.isoformat()
    conversation.call_details = details
    await session.flush()
    _schedule(session, queue, update)
    return update


def _decide(
    conversation: Conversation, details: dict[str, Any], party: Party, location: Location, at: datetime
) -> CallUpdate:
    sid = conversation.external_id or ""
    base = CallUpdate(conversation.id, sid, applied=True, status=party.status)
    if party.status in ENDED:
        return CallUpdate(conversation.id, sid, applied=True, status=party.status, finished=True)
    ringing_staff_line = (
        party.status in RINGING
        and party.direction == "Inbound"
        and conversation.agent_phone == location.staff_phone
        and not details.get("answered")
        and "forward" not in details
    )
    if not ringing_staff_line or details.get("forward_scheduled"):
        return base
    details["forward_scheduled"] = True
    if not staff_available(location, now=at):
        return CallUpdate(conversation.id, sid, True, party.status, forward=ForwardReason.after_hours)
    return CallUpdate(conversation.id, sid, True, party.status, check_unanswered=True)


def _schedule(session: AsyncSession, queue: Any, update: CallUpdate) -> None:
    if queue is None:
        return
    sid = update.telephony_session_id
    jobs: list[tuple[str, tuple[str, ...], str, timedelta | None]] = []
    if update.forward:
        jobs.append((FORWARD_JOB, (sid, update.forward), forward_job_id(sid), None))
    if update.check_unanswered:
        jobs.append((FORWARD_JOB, (sid, ForwardReason.unanswered), unanswered_job_id(sid), UNANSWERED_AFTER))
    if update.finished:
        jobs.append((RECORDING_JOB, (sid,), recording_job_id(sid), None))
    for job, args, job_id, defer in jobs:

        async def _enqueue(
            job: str = job,
            args: tuple[str, ...] = args,
            job_id: str = job_id,
            defer: timedelta | None = defer,
        ) -> None:
            await queue.enqueue_job(job, *args, _job_id=job_id, _defer_by=defer)

        after_commit(session, _enqueue)
