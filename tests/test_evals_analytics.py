"""Transcript analytics over real stored conversations.

Text conversations are made by driving the agent (deterministic brain, real tools)
through the signed Twilio webhook, exactly as production stores them; a finished
phone call and an old conversation outside the window are written with the ORM.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.brain import Channel, Role
from agent.brains.deterministic import DeterministicBrain
from agent.engine import ConversationEngine
from agent.models import (
    Conversation,
    ConversationStatus,
    CostKind,
    CostLine,
    Message,
    ToolCall,
    Transfer,
    TransferOutcome,
    TransferReason,
)
from agent.tools.registry import ALL_TOOLS
from evals.analytics import normalise_question, render_transcript_report, transcript_analytics
from evals.commands import transcripts_command
from hibachi.context import AppContext
from hibachi.db import unit_of_work
from hibachi.settings import Settings
from tests.sms import text_agent

TZ = ZoneInfo("America/Los_Angeles")
NOW = datetime.combine(datetime.now(TZ).date(), time(11, 0), TZ)  # staff hours
EVENT_DAY = NOW.date() + timedelta(days=12)
Sessions = async_sessionmaker[AsyncSession]

BOOKER, BROWSER, ASKER, UPSET = "+14085550123", "+14085550124", "+14085550125", "+14085550126"
GAP_QUESTION = "What's the weather in Paris tomorrow?"


@pytest.fixture
def deterministic(app_ctx: AppContext) -> Iterator[ConversationEngine]:
    """The real engine with the deterministic brain, on a fixed clock in staff hours."""
    original = app_ctx.extras["engine"]
    engine = ConversationEngine(app_ctx, brain=DeterministicBrain(), tools=ALL_TOOLS, clock=lambda: NOW)
    app_ctx.extras["engine"] = engine
    yield engine
    app_ctx.extras["engine"] = original


async def add_phone_call(db: Sessions, *, ended: datetime, seconds: int, usd: str) -> None:
    """A finished call as the voice engine stores it: two customer turns, a complaint transfer."""
    started = ended - timedelta(seconds=seconds)
    async with unit_of_work(db) as session:
        call = Conversation(
            channel=Channel.voice,
            provider="twilio",
            customer_phone="+19165550777",
            agent_phone="+19165550199",
            location_slug="sacramento",
            external_id=f"CA{ended.timestamp():.0f}",
            status=ConversationStatus.closed,
            last_activity_at=ended,
            ended_at=ended,
            call_details={"started_at": started.isoformat()},
        )
        session.add(call)
        await session.flush()
        for offset, role, text, sentiment in (
            (5, Role.customer, "My chef never showed up last week.", -0.6),
            (8, Role.agent, "I'm so sorry. Let me get someone from our team.", None),
            (20, Role.customer, "Fine, thanks.", 0.2),
        ):
            session.add(
                Message(
                    conversation_id=call.id,
                    role=role,
                    text=text,
                    created_at=started + timedelta(seconds=offset),
                    sentiment=sentiment,
                )
            )
        session.add(
            Transfer(
                conversation_id=call.id,
                reason=TransferReason.complaint,
                outcome=TransferOutcome.connected,
                summary="No-show complaint",
                staff_phone="+19165550100",
            )
        )
        session.add(
            CostLine(
                conversation_id=call.id,
                kind=CostKind.voice,
                item="twilio",
                quantity=seconds,
                usd=Decimal(usd),
            )
        )


async def stored_customer_sentiments(db: Sessions, since: datetime) -> list[float]:
    async with db() as session:
        rows = await session.scalars(
            select(Message.sentiment).where(
                Message.role == Role.customer, Message.sentiment.is_not(None), Message.created_at >= since
            )
        )
        return [float(s) for s in rows if s is not None]


async def test_transcript_analytics_over_real_conversations(
    anon: httpx.AsyncClient,
    db: Sessions,
    settings: Settings,
    deterministic: ConversationEngine,
    knowledge_base: None,
) -> None:
    day = f"{EVENT_DAY:%B} {EVENT_DAY.day}"
    # Booked by text: availability, then a booking.
    for text in (f"Hi, what's open on {day}?", "6pm please, for 15 adults and 2 kids", "Jane Roe", "yes"):
        await text_agent(anon, settings, text, from_phone=BOOKER)
    # Looked at dates but did not book.
    await text_agent(anon, settings, f"what's open on {day}?", from_phone=BROWSER)
    # Asked something the knowledge base answers, then twice something it cannot.
    await text_agent(anon, settings, "do you guys bring the grill?", from_phone=ASKER)
    await text_agent(anon, settings, GAP_QUESTION, from_phone=ASKER)
    await text_agent(anon, settings, "what's the weather in paris tomorrow", from_phone=ASKER)
    # Asked for a person.
    await text_agent(anon, settings, "I'd like to talk to a real person please", from_phone=UPSET)
    # A 3-minute complaint call an hour ago, and an old call outside the window.
    await add_phone_call(db, ended=NOW - timedelta(hours=1), seconds=180, usd="0.45")
    await add_phone_call(db, ended=NOW - timedelta(days=30), seconds=60, usd="9.99")

    since = NOW - timedelta(days=7)
    report = await transcript_analytics(db, since=since, now=NOW + timedelta(minutes=1))

    assert report.conversations == 5
    assert {name: stats.conversations for name, stats in report.by_channel.items()} == {"sms": 4, "voice": 1}
    assert report.contained == 3
    assert report.containment_rate == pytest.approx(3 / 5)
    assert (report.booking_intent, report.booked) == (2, 1)
    assert report.booking_conversion == pytest.approx(0.5)
    assert report.transfer_reasons == {"complaint": 1, "requested": 1}
    # Every stored customer score in the window, the call's -0.6 and +0.2 among them.
    sentiments = await stored_customer_sentiments(db, since)
    assert len(sentiments) == 9 + 2
    assert report.mean_sentiment == pytest.approx(statistics.fmean(sentiments))
    assert sum(report.sentiment_counts.values()) == 11
    assert report.sentiment_counts["negative"] >= 1
    # The call: $0.45 over 3 minutes. Texts cost their SMS segments.
    voice = report.by_channel["voice"]
    assert voice.minutes == pytest.approx(3.0)
    assert voice.cost_per_minute_usd == pytest.approx(0.15)
    assert voice.cost_per_conversation_usd == pytest.approx(0.45)
    sms = report.by_channel["sms"]
    assert sms.cost_usd > 0
    assert report.cost_usd == pytest.approx(0.45 + sms.cost_usd)
    assert report.cost_per_conversation_usd == pytest.approx(report.cost_usd / 5)
    # The knowledge-base gap, grouped across spellings; the grill question was answered.
    [gap] = report.faq_gaps
    assert gap.question == normalise_question(GAP_QUESTION) == "what's the weather in paris tomorrow"
    assert (gap.count, gap.unanswered, gap.low_confidence) == (2, 0, 2)
    assert gap.best_similarity is not None
    assert gap.best_similarity < 0.4  # the retriever's confidence threshold for MiniLM
    async with db() as session:
        faq_calls = list(await session.scalars(select(ToolCall).where(ToolCall.name == "faq_search")))
    assert report.faq_searches == len(faq_calls) == 3

    text = render_transcript_report(report)
    assert "60.0% (3)" in text  # containment
    assert "50.0% (1 of 2)" in text  # booking conversion
    assert "what's the weather in paris tomorrow" in text
    assert "complaint" in text


async def test_transcripts_command_prints_the_report_for_the_window(
    db: Sessions, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_phone_call(db, ended=NOW - timedelta(hours=2), seconds=120, usd="0.30")

    await transcripts_command(settings, "24h", now=NOW)
    out = capsys.readouterr().out
    assert "Conversations active" in out
    assert "$0.1500" in out  # per minute on the call

    await transcripts_command(settings, "30m", as_json=True, now=NOW)
    assert '"conversations": 0' in capsys.readouterr().out


async def test_transcripts_command_rejects_a_bad_window(settings: Settings) -> None:
    with pytest.raises(typer.BadParameter, match="like 7d, 24h or 30m"):
        await transcripts_command(settings, "last week")


async def test_hibachi_eval_transcripts_reads_the_database(db: Sessions, settings: Settings) -> None:
    await add_phone_call(db, ended=datetime.now(TZ) - timedelta(hours=1), seconds=60, usd="0.10")
    assert settings.database_url is not None
    assert settings.redis_url is not None
    environ = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hibachi.cli", "eval", "transcripts", "--since", "1d", "--json"],
        env={**environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["conversations"] >= 1
    assert report["by_channel"]["voice"]["conversations"] >= 1
