"""Call recordings -> transcript -> analysis: sentiment, summary, booking intent, missed opportunity.

Transcription is Deepgram prerecorded (`POST /v1/listen` through `deepgram-sdk`) when a
key is configured, else the embedded Whisper (`LocalSTT.transcribe` on 8 kHz mu-law).
The analysis is deterministic: the same NLU the rule brain uses reads each sentence.
Without diarization the whole recording is one customer message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from deepgram.types.listen_v1response import ListenV1Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.nlu.intents import Intent
from agent.nlu.understand import understand
from agent.speech.deepgram import SpeechProviderError, deepgram_client
from booking_tools.bookings.models import Booking
from booking_tools.customers.models import Customer
from hibachi.settings import Settings
from telephony.audio import SAMPLE_RATE
from telephony.ringcentral.call_control import Recording
from telephony.ringcentral.media import recording_to_ulaw8k

BOOKING_INTENTS = frozenset({Intent.book, Intent.availability, Intent.quote, Intent.large_event})
NOT_BOOKING = frozenset({Intent.cancel, Intent.reschedule, Intent.my_bookings, Intent.complaint})
POSITIVE, NEGATIVE = 0.3, -0.3
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(slots=True, frozen=True)
class Transcription:
    text: str
    seconds: float  # billed audio length
    engine: str  # price-table key: "deepgram", "local"


class RecordingTranscriber(Protocol):
    """Turns one whole recording into text (not streaming)."""

    name: str

    async def transcribe(self, recording: Recording) -> Transcription: ...


class DeepgramPrerecorded:
    """Nova-3 prerecorded transcription; the container (WAV/MP3) is sent as stored."""

    name = "deepgram"

    def __init__(self, *, api_key: str, base_url: str | None = None, model: str = "nova-3") -> None:
        self._client = deepgram_client(api_key, base_url)
        self.model = model

    async def transcribe(self, recording: Recording) -> Transcription:
        response = await self._client.listen.v1.media.transcribe_file(
            request=recording.content, model=self.model, smart_format=True, punctuate=True
        )
        if not isinstance(response, ListenV1Response):
            raise SpeechProviderError("Deepgram accepted the recording for a callback instead of answering")
        channels = response.results.channels
        alternatives = channels[0].alternatives if channels else None
        text = (alternatives[0].transcript or "") if alternatives else ""
        return Transcription(text.strip(), float(response.metadata.duration), self.name)


class LocalRecordingTranscriber:
    """The embedded Whisper over the whole recording, decoded to 8 kHz mu-law."""

    name = "local"

    async def transcribe(self, recording: Recording) -> Transcription:
        from agent.speech.local import LocalSTT  # loads Whisper; only when used

        ulaw = recording_to_ulaw8k(recording.content, recording.content_type)
        text = await LocalSTT().transcribe(ulaw)
        return Transcription(text.strip(), len(ulaw) / SAMPLE_RATE, self.name)


def build_transcriber(settings: Settings) -> RecordingTranscriber:
    """Deepgram when `DEEPGRAM_API_KEY` is set, else the local engine."""
    if settings.deepgram_api_key:
        return DeepgramPrerecorded(api_key=settings.deepgram_api_key, base_url=settings.deepgram_base_url)
    return LocalRecordingTranscriber()


@dataclass(slots=True, frozen=True)
class CallAnalysis:
    """What a finished call amounted to (stored under `call_details["analysis"]`)."""

    sentiment: float
    booking_intent: bool
    intent: str
    event_date: date | None
    party_size: int | None
    booked: bool
    missed_opportunity: bool
    summary: str

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        data["event_date"] = self.event_date.isoformat() if self.event_date else None
        return data


@dataclass(slots=True, frozen=True)
class BookingInterest:
    wanted: bool
    intent: str
    event_date: date | None
    party_size: int | None


def booking_interest(transcript: str, local_now: datetime) -> BookingInterest:
    """Whether the caller wanted to book, and the date and party size they named."""
    intents: list[Intent] = []
    event_date: date | None = None
    party_size: int | None = None
    for sentence in (s for s in _SENTENCE.split(transcript) if s.strip()):
        heard = understand(sentence, local_now)
        intents.append(heard.intent)
        if event_date is None and heard.date is not None:
            event_date = heard.date.day
        party = heard.party
        if party_size is None and not party.empty:
            party_size = (
                party.total or sum(n or 0 for n in (party.adults, party.children, party.toddlers)) or None
            )
    booking = next((i for i in intents if i in BOOKING_INTENTS), None)
    other = next((i for i in intents if i in NOT_BOOKING), None)
    # A date or time alone ("open today?") is not interest; a party size is.
    wanted = booking is not None or (party_size is not None and other is None)
    intent = booking or other or next((i for i in intents if i is not Intent.unknown), Intent.unknown)
    return BookingInterest(wanted, intent.value, event_date, party_size)


async def booked_since(session: AsyncSession, *, phone: str, since: datetime) -> bool:
    """Whether a booking was made for this phone number at or after `since`."""
    found = await session.scalar(
        select(Booking.id)
        .join(Customer, Customer.id == Booking.customer_id)
        .where(Customer.phone == phone, Booking.created_at >= since)
        .limit(1)
    )
    return found is not None


def _mood(score: float) -> str:
    if score >= POSITIVE:
        return "positive"
    if score <= NEGATIVE:
        return "negative"
    return "neutral"


def summarize(
    *,
    customer_phone: str,
    seconds: float,
    transcript: str,
    interest: BookingInterest,
    sentiment: float,
    booked: bool,
    notes: Sequence[str] = (),
) -> str:
    """A few plain sentences staff can read at a glance."""
    parts = [f"{seconds:.0f}s call from {customer_phone}."]
    parts += notes
    if interest.wanted:
        wants = ["Wanted to book"]
        if interest.party_size:
            wants.append(f"for {interest.party_size} guests")
        if interest.event_date:
            wants.append(f"on {interest.event_date:%a %b %-d}")
        parts.append(" ".join(wants) + ".")
        parts.append("A booking was made." if booked else "No booking yet: missed opportunity, follow up.")
    else:
        parts.append(f"Topic: {interest.intent.replace('_', ' ')}.")
    parts.append(f"Caller sounded {_mood(sentiment)} ({sentiment:+.2f}).")
    quote = transcript if len(transcript) <= 240 else transcript[:237].rstrip() + "..."
    parts.append(f'Said: "{quote}"' if quote else "Nothing intelligible was said.")
    return " ".join(parts)


async def analyse_transcript(
    session: AsyncSession,
    *,
    customer_phone: str,
    transcript: str,
    seconds: float,
    sentiment: float,
    started_at: datetime,
    timezone: str,
    notes: Sequence[str] = (),
) -> CallAnalysis:
    """Booking intent, booking made since the call began, missed opportunity and a summary."""
    interest = booking_interest(transcript, started_at.astimezone(ZoneInfo(timezone)))
    booked = await booked_since(session, phone=customer_phone, since=started_at)
    return CallAnalysis(
        sentiment=sentiment,
        booking_intent=interest.wanted,
        intent=interest.intent,
        event_date=interest.event_date,
        party_size=interest.party_size,
        booked=booked,
        missed_opportunity=interest.wanted and not booked,
        summary=summarize(
            customer_phone=customer_phone,
            seconds=seconds,
            transcript=transcript,
            interest=interest,
            sentiment=sentiment,
            booked=booked,
            notes=notes,
        ),
    )
