"""Transcript analytics over the conversations stored in the database.

What analysts ask of real traffic (not eval runs): how much the agent handles alone,
how often booking questions become bookings, why people were handed to staff, how
customers felt, what it cost, and which questions the knowledge base could not answer.
"""

from __future__ import annotations

import io
import re
import statistics
import uuid
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.brain import Channel, Role
from agent.models import Conversation, CostLine, Message, ToolCall, Transfer
from booking_tools.bookings.models import Booking
from knowledge.retrieve import DEFAULT_CONFIDENT_COSINE

#: Tools whose use shows the customer wanted to book (asked for dates, prices or a booking).
BOOKING_INTENT_TOOLS = ("check_availability", "find_open_slots", "get_quote", "create_booking")
#: VADER's usual neutral band: compound scores within ±0.05 are neutral.
NEUTRAL_BAND = 0.05
#: How many knowledge-base gaps the report lists.
GAP_LIMIT = 25


class ChannelStats(BaseModel):
    conversations: int
    cost_usd: float
    minutes: float
    cost_per_conversation_usd: float
    cost_per_minute_usd: float | None


class FaqGap(BaseModel):
    """One question (normalised) the knowledge base answered with nothing or without confidence."""

    question: str
    count: int
    unanswered: int  # no passage at all
    low_confidence: int  # passages, but `confident` was false
    best_similarity: float | None
    last_asked: datetime


class TranscriptReport(BaseModel):
    since: datetime
    now: datetime
    conversations: int
    by_channel: dict[str, ChannelStats]
    contained: int
    containment_rate: float | None
    booking_intent: int
    booked: int
    booking_conversion: float | None
    transfer_reasons: dict[str, int]
    customer_messages: int
    mean_sentiment: float | None
    sentiment_counts: dict[str, int]  # negative / neutral / positive customer messages
    cost_usd: float
    cost_per_conversation_usd: float | None
    cost_per_minute_usd: float | None
    faq_searches: int
    faq_gaps: list[FaqGap]


def _in_window(since: datetime, now: datetime) -> Select[uuid.UUID]:
    return select(Conversation.id).where(
        Conversation.last_activity_at >= since, Conversation.last_activity_at <= now
    )


async def transcript_analytics(
    sessions: async_sessionmaker[AsyncSession], *, since: datetime, now: datetime
) -> TranscriptReport:
    """Analytics of the conversations active in [since, now] (by `last_activity_at`).

    Definitions:
    - containment: conversations with no transfer to staff, over all conversations.
    - booking conversion: of the conversations with booking intent (the agent called
      check_availability, find_open_slots, get_quote or create_booking), the share in which
      the agent made a booking; a booking belongs to the conversation whose id is in its
      idempotency key (`agent:<conversation id>:…`, set by the create_booking tool), and
      counts even if it was later cancelled.
    - sentiment: the mean of the scores stored on customer messages (-1..1), and their
      counts as negative / neutral / positive (neutral within ±0.05).
    - cost: the conversation's cost lines. Minutes: for voice, the call (first message or
      call start to `ended_at`); for text, first to last message, the same as eval runs.
      Cost per minute is total cost over total minutes, overall and per channel; a text
      thread's "minutes" are its span, not talk time, so read the voice row for telephony.
    - FAQ gaps: `faq_search` calls that returned no passage ("unanswered") or whose best
      cosine similarity missed the retriever's calibrated threshold (`confident` false,
      "low confidence"), grouped by the normalised question, most frequent first.
    """
    window = _in_window(since, now)
    async with sessions() as session:
        conversations = (
            await session.execute(
                select(
                    Conversation.id,
                    Conversation.channel,
                    Conversation.created_at,
                    Conversation.ended_at,
                    Conversation.last_activity_at,
                    Conversation.call_details,
                ).where(Conversation.id.in_(window))
            )
        ).all()
        spans = {
            row.conversation_id: (row.first, row.last)
            for row in await session.execute(
                select(
                    Message.conversation_id,
                    func.min(Message.created_at).label("first"),
                    func.max(Message.created_at).label("last"),
                )
                .where(Message.conversation_id.in_(window))
                .group_by(Message.conversation_id)
            )
        }
        sentiments = [
            float(score)
            for score in await session.scalars(
                select(Message.sentiment).where(
                    Message.conversation_id.in_(window),
                    Message.role == Role.customer,
                    Message.sentiment.is_not(None),
                )
            )
            if score is not None
        ]
        customer_messages = await session.scalar(
            select(func.count()).where(Message.conversation_id.in_(window), Message.role == Role.customer)
        )
        transfers = (
            await session.execute(
                select(Transfer.conversation_id, Transfer.reason).where(Transfer.conversation_id.in_(window))
            )
        ).all()
        costs: dict[uuid.UUID, float] = {
            row.conversation_id: float(row.usd)
            for row in await session.execute(
                select(CostLine.conversation_id, func.sum(CostLine.usd).label("usd"))
                .where(CostLine.conversation_id.in_(window))
                .group_by(CostLine.conversation_id)
            )
        }
        intent = set(
            await session.scalars(
                select(ToolCall.conversation_id)
                .where(ToolCall.conversation_id.in_(window), ToolCall.name.in_(BOOKING_INTENT_TOOLS))
                .distinct()
            )
        )
        conversation_of_booking = func.split_part(Booking.idempotency_key, ":", 2)
        booked_keys = await session.scalars(
            select(conversation_of_booking)
            .where(
                Booking.idempotency_key.like("agent:%"),
                conversation_of_booking.in_([str(row.id) for row in conversations]),
            )
            .distinct()
        )
        booked = {uuid.UUID(key) for key in booked_keys}
        faq_calls = (
            await session.execute(
                select(ToolCall.arguments, ToolCall.result, ToolCall.created_at).where(
                    ToolCall.conversation_id.in_(window), ToolCall.name == "faq_search"
                )
            )
        ).all()

    transferred = {row.conversation_id for row in transfers}
    by_channel_ids: dict[str, list[uuid.UUID]] = defaultdict(list)
    minutes: dict[uuid.UUID, float] = {}
    for row in conversations:
        by_channel_ids[row.channel.value].append(row.id)
        minutes[row.id] = (
            _duration_s(row.channel, row.created_at, row.ended_at, row.call_details, spans.get(row.id)) / 60
        )
    ids = [row.id for row in conversations]
    total_cost = sum(costs.get(i, 0.0) for i in ids)
    total_minutes = sum(minutes.values())
    intent_booked = booked & intent
    return TranscriptReport(
        since=since,
        now=now,
        conversations=len(ids),
        by_channel={name: _channel(group, costs, minutes) for name, group in sorted(by_channel_ids.items())},
        contained=len(ids) - len(transferred),
        containment_rate=(len(ids) - len(transferred)) / len(ids) if ids else None,
        booking_intent=len(intent),
        booked=len(intent_booked),
        booking_conversion=len(intent_booked) / len(intent) if intent else None,
        transfer_reasons=dict(Counter(row.reason.value for row in transfers).most_common()),
        customer_messages=customer_messages or 0,
        mean_sentiment=statistics.fmean(sentiments) if sentiments else None,
        sentiment_counts={
            "negative": sum(1 for s in sentiments if s < -NEUTRAL_BAND),
            "neutral": sum(1 for s in sentiments if -NEUTRAL_BAND <= s <= NEUTRAL_BAND),
            "positive": sum(1 for s in sentiments if s > NEUTRAL_BAND),
        },
        cost_usd=total_cost,
        cost_per_conversation_usd=total_cost / len(ids) if ids else None,
        cost_per_minute_usd=total_cost / total_minutes if total_minutes > 0 else None,
        faq_searches=len(faq_calls),
        faq_gaps=_faq_gaps([(row.arguments, row.result, row.created_at) for row in faq_calls]),
    )


def _duration_s(
    channel: Channel,
    created_at: datetime,
    ended_at: datetime | None,
    call_details: dict[str, Any],
    span: tuple[datetime, datetime] | None,
) -> float:
    """Call length for voice, first to last message for text (0 when unknown)."""
    first, last = span if span else (None, None)
    start: datetime | None
    end: datetime | None
    if channel is Channel.voice:
        started = call_details.get("started_at")
        start = datetime.fromisoformat(started) if isinstance(started, str) else first or created_at
        end = ended_at or last
    else:
        start, end = first, last
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def _channel(
    ids: list[uuid.UUID], costs: dict[uuid.UUID, float], minutes: dict[uuid.UUID, float]
) -> ChannelStats:
    cost = sum(costs.get(i, 0.0) for i in ids)
    total_minutes = sum(minutes[i] for i in ids)
    return ChannelStats(
        conversations=len(ids),
        cost_usd=cost,
        minutes=total_minutes,
        cost_per_conversation_usd=cost / len(ids),
        cost_per_minute_usd=cost / total_minutes if total_minutes > 0 else None,
    )


def normalise_question(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation: how questions are grouped."""
    return re.sub(r"\s+", " ", text).strip().strip("?!.,;: ").lower()


def _faq_gaps(calls: list[tuple[dict[str, Any], dict[str, Any], datetime]]) -> list[FaqGap]:
    groups: dict[str, list[tuple[bool, float | None, datetime]]] = defaultdict(list)
    for arguments, result, asked_at in calls:
        question = normalise_question(str(arguments.get("question", "")))
        data = result.get("data") or {}
        passages = data.get("passages") or []
        similarities = [
            float(p["similarity"]) for p in passages if isinstance(p.get("similarity"), int | float)
        ]
        best = max(similarities) if similarities else None
        confident = data.get("confident")
        if confident is None:  # rows written before `confident` existed
            confident = best is not None and best >= DEFAULT_CONFIDENT_COSINE
        if question and (not passages or not confident):
            groups[question].append((not passages, best, asked_at))
    gaps = [
        FaqGap(
            question=question,
            count=len(hits),
            unanswered=sum(1 for empty, _, _ in hits if empty),
            low_confidence=sum(1 for empty, _, _ in hits if not empty),
            best_similarity=max((s for _, s, _ in hits if s is not None), default=None),
            last_asked=max(at for _, _, at in hits),
        )
        for question, hits in groups.items()
    ]
    gaps.sort(key=lambda gap: (-gap.count, gap.question))
    return gaps[:GAP_LIMIT]


# ---- rendering ----------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def render_transcript_report(report: TranscriptReport, *, width: int = 100) -> str:
    """The report as terminal text (rich tables, no colour codes)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None)
    sentiment = "-" if report.mean_sentiment is None else f"{report.mean_sentiment:+.2f}"
    console.print(
        f"Conversations active {report.since:%Y-%m-%d %H:%M} to {report.now:%Y-%m-%d %H:%M %Z}: "
        f"{report.conversations}"
    )
    summary = Table(show_header=False, title="Summary", title_justify="left")
    summary.add_column("")
    summary.add_column("", justify="right")
    summary.add_row("containment (no transfer)", f"{_pct(report.containment_rate)} ({report.contained})")
    summary.add_row(
        "booking conversion",
        f"{_pct(report.booking_conversion)} ({report.booked} of {report.booking_intent})",
    )
    summary.add_row("mean sentiment", f"{sentiment} over {sum(report.sentiment_counts.values())} messages")
    counts = report.sentiment_counts
    summary.add_row(
        "  negative / neutral / positive",
        f"{counts['negative']} / {counts['neutral']} / {counts['positive']}",
    )
    summary.add_row("cost", _usd(report.cost_usd))
    summary.add_row("cost / conversation", _usd(report.cost_per_conversation_usd))
    summary.add_row("cost / minute", _usd(report.cost_per_minute_usd))
    console.print(summary)

    channels = Table(title="By channel", title_justify="left")
    for column in ("channel", "conversations", "minutes", "cost", "per conversation", "per minute"):
        channels.add_column(column, justify="left" if column == "channel" else "right")
    for name, stats in report.by_channel.items():
        channels.add_row(
            name,
            str(stats.conversations),
            f"{stats.minutes:.1f}",
            _usd(stats.cost_usd),
            _usd(stats.cost_per_conversation_usd),
            _usd(stats.cost_per_minute_usd),
        )
    console.print(channels)

    if report.transfer_reasons:
        reasons = Table(title="Transfer reasons", title_justify="left")
        reasons.add_column("reason")
        reasons.add_column("transfers", justify="right")
        for reason, count in report.transfer_reasons.items():
            reasons.add_row(reason, str(count))
        console.print(reasons)

    gaps = Table(
        title=f"Questions the knowledge base missed ({report.faq_searches} FAQ searches in all)",
        title_justify="left",
    )
    gaps.add_column("question")
    for column in ("asked", "unanswered", "low confidence", "best similarity"):
        gaps.add_column(column, justify="right")
    for gap in report.faq_gaps:
        gaps.add_row(
            escape(gap.question),
            str(gap.count),
            str(gap.unanswered),
            str(gap.low_confidence),
            "-" if gap.best_similarity is None else f"{gap.best_similarity:.2f}",
        )
    console.print(gaps if report.faq_gaps else "No unanswered or low-confidence FAQ questions.")
    return buffer.getvalue()
