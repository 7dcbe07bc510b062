"""RingCentral calls: session events logged as conversations, forwarding, recordings analysed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from arq.jobs import Job, JobStatus
from arq.worker import Worker
from sqlalchemy import select

from agent.call_log import forward_job_id, unanswered_job_id
from agent.call_tasks import analyse_call_recording, forward_ringing_call
from agent.models import Conversation, ConversationStatus, CostKind, CostLine, Message
from hibachi.context import AppContext
from telephony.audio import tone_ulaw
from telephony.fakes import FakeRingCentral
from telephony.fakes.deepgram_server import FakeDeepgram
from telephony.fakes.ringcentral_server import FakeCall
from telephony.ringcentral.media import wav_ulaw
from tests.sms import SACRAMENTO_AGENT, post_ringcentral

STAFF_LINE = "+19165550100"
CALLER = "+19165550123"
AFTER_HOURS = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # 03:00 in Sacramento
IN_HOURS = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)  # 12:00 in Sacramento


@pytest.fixture(scope="module")
def fake_deepgram() -> Iterator[FakeDeepgram]:
    with FakeDeepgram() as fake:
        yield fake


@pytest.fixture
def deepgram(app_ctx: AppContext, fake_deepgram: FakeDeepgram) -> Iterator[FakeDeepgram]:
    """Prerecorded transcription goes to the fake Deepgram for this test."""
    original = app_ctx.settings
    fake_deepgram.reset()
    app_ctx.settings = original.model_copy(
        update={"deepgram_api_key": fake_deepgram.api_key, "deepgram_base_url": fake_deepgram.base_url}
    )
    yield fake_deepgram
    app_ctx.settings = original


async def run_call_jobs(app_ctx: AppContext) -> None:
    """Drain due call jobs with a real arq worker (burst), as the app worker would."""
    worker = Worker(
        functions=[forward_ringing_call, analyse_call_recording],
        redis_pool=app_ctx.queue,
        ctx={"app": app_ctx},
        burst=True,
        handle_signals=False,
        poll_delay=0.05,
        max_tries=1,
    )
    try:
        await worker.main()
    finally:
        await worker.close()


async def deliver(anon: httpx.AsyncClient, event: dict[str, Any]) -> None:
    response = await post_ringcentral(anon, event)
    assert response.status_code == 200, response.text


async def conversations(app_ctx: AppContext) -> list[Conversation]:
    async with app_ctx.sessions() as session:
        return list(await session.scalars(select(Conversation)))


def staff_call(fake: FakeRingCentral, sid: str = "s-a0f1e2d3c4b5a69788z19d1c2b3a4f0001") -> FakeCall:
    return fake.start_call(sid, from_phone=CALLER, to_phone=STAFF_LINE)


async def test_session_events_log_one_call_and_end_it(
    anon: httpx.AsyncClient, app_ctx: AppContext, fake_ringcentral: FakeRingCentral
) -> None:
    call = staff_call(fake_ringcentral)
    ended = IN_HOURS + timedelta(minutes=3)
    for sequence, status, at in (
        (1, "Proceeding", IN_HOURS),
        (2, "Answered", IN_HOURS + timedelta(seconds=8)),
        (3, "Disconnected", ended),
    ):
        await deliver(
            anon, fake_ringcentral.session_event(call, sequence=sequence, status=status, event_time=at)
        )

    [conversation] = await conversations(app_ctx)
    assert conversation.channel == "voice"
    assert conversation.provider == "ringcentral"
    assert conversation.external_id == call.telephony_session_id
    assert conversation.customer_phone == CALLER
    assert conversation.agent_phone == STAFF_LINE
    assert conversation.location_slug == "sacramento"
    assert conversation.status is ConversationStatus.closed
    assert conversation.ended_at == ended
    assert conversation.call_details["answered"] is True
    assert conversation.call_details["status"] == "Disconnected"
    # Ringing in hours: a check is scheduled, nothing is forwarded now.
    unanswered = Job(unanswered_job_id(call.telephony_session_id), app_ctx.queue)
    assert await unanswered.status() is JobStatus.deferred
    assert fake_ringcentral.call_control == []


async def test_repeated_and_out_of_order_events_change_nothing(
    anon: httpx.AsyncClient, app_ctx: AppContext, fake_ringcentral: FakeRingCentral
) -> None:
    call = staff_call(fake_ringcentral)
    ringing = fake_ringcentral.session_event(call, sequence=1, status="Proceeding", event_time=AFTER_HOURS)
    answered = fake_ringcentral.session_event(
        call, sequence=2, status="Answered", event_time=AFTER_HOURS + timedelta(seconds=5)
    )
    hung_up = fake_ringcentral.session_event(
        call, sequence=3, status="Disconnected", event_time=AFTER_HOURS + timedelta(minutes=1)
    )
    for event in (hung_up, answered, ringing, hung_up, ringing):
        await deliver(anon, event)
    await run_call_jobs(app_ctx)

    [conversation] = await conversations(app_ctx)
    assert conversation.status is ConversationStatus.closed
    assert conversation.call_details["sequence"] == 3
    assert conversation.call_details["status"] == "Disconnected"
    assert conversation.call_details["answered"] is True
    assert conversation.ended_at == AFTER_HOURS + timedelta(minutes=1)
    assert fake_ringcentral.call_control == []  # a late "ringing" never forwards a finished call


async def test_after_hours_call_to_the_staff_line_is_forwarded_to_the_agent_number(
    anon: httpx.AsyncClient, app_ctx: AppContext, fake_ringcentral: FakeRingCentral
) -> None:
    call = staff_call(fake_ringcentral)
    ringing = fake_ringcentral.session_event(call, sequence=1, status="Proceeding", event_time=AFTER_HOURS)
    await deliver(anon, ringing)
    await deliver(anon, ringing)  # delivered twice
    await run_call_jobs(app_ctx)

    assert fake_ringcentral.call_control == [
        {
            "action": "forward",
            "session_id": call.telephony_session_id,
            "party_id": call.party_id,
            "phoneNumber": SACRAMENTO_AGENT,
        }
    ]
    [conversation] = await conversations(app_ctx)
    assert conversation.call_details["forward"]["to"] == SACRAMENTO_AGENT
    assert conversation.call_details["forward"]["reason"] == "after_hours"
    assert conversation.summary is not None
    assert "forwarded to the agent" in conversation.summary
    assert await Job(unanswered_job_id(call.telephony_session_id), app_ctx.queue).status() is (
        JobStatus.not_found
    )


async def test_in_hours_call_is_forwarded_only_when_still_unanswered(
    anon: httpx.AsyncClient, app_ctx: AppContext, fake_ringcentral: FakeRingCentral
) -> None:
    ringing_call = staff_call(fake_ringcentral, "s-unanswered-0001")
    picked_up = staff_call(fake_ringcentral, "s-answered-0002")
    for call in (ringing_call, picked_up):
        await deliver(
            anon, fake_ringcentral.session_event(call, sequence=1, status="Proceeding", event_time=IN_HOURS)
        )
    await deliver(
        anon,
        fake_ringcentral.session_event(
            picked_up, sequence=2, status="Answered", event_time=IN_HOURS + timedelta(seconds=6)
        ),
    )
    assert fake_ringcentral.call_control == []
    assert await Job(forward_job_id(ringing_call.telephony_session_id), app_ctx.queue).status() is (
        JobStatus.not_found
    )

    # The scheduled checks come due.
    ctx = {"app": app_ctx}
    assert await forward_ringing_call(ctx, ringing_call.telephony_session_id, "unanswered") is True
    assert await forward_ringing_call(ctx, picked_up.telephony_session_id, "unanswered") is False
    assert await forward_ringing_call(ctx, ringing_call.telephony_session_id, "unanswered") is False

    [forward] = fake_ringcentral.call_control
    assert forward["session_id"] == ringing_call.telephony_session_id
    assert forward["phoneNumber"] == SACRAMENTO_AGENT


async def test_calls_to_unknown_numbers_are_ignored(
    anon: httpx.AsyncClient, app_ctx: AppContext, fake_ringcentral: FakeRingCentral
) -> None:
    call = fake_ringcentral.start_call("s-elsewhere", from_phone=CALLER, to_phone="+12125550100")
    await deliver(
        anon, fake_ringcentral.session_event(call, sequence=1, status="Proceeding", event_time=IN_HOURS)
    )
    assert await conversations(app_ctx) == []


async def test_finished_call_recording_is_transcribed_and_analysed_as_a_missed_opportunity(
    anon: httpx.AsyncClient,
    app_ctx: AppContext,
    fake_ringcentral: FakeRingCentral,
    deepgram: FakeDeepgram,
) -> None:
    said = "Hi, I'd like to book a hibachi party for 12 people next Saturday. Can someone call me back?"
    deepgram.script_transcripts(said)
    call = staff_call(fake_ringcentral)
    audio = wav_ulaw(tone_ulaw(300, 3000))
    fake_ringcentral.add_recording("9001", audio, telephony_session_id=call.telephony_session_id, duration=3)
    answered = fake_ringcentral.session_event(
        call, sequence=1, status="Answered", event_time=IN_HOURS, with_recording=True
    )
    hung_up = fake_ringcentral.session_event(
        call, sequence=2, status="Disconnected", event_time=IN_HOURS + timedelta(seconds=3)
    )
    await deliver(anon, answered)
    await deliver(anon, hung_up)
    await run_call_jobs(app_ctx)

    [conversation] = await conversations(app_ctx)
    analysis = conversation.call_details["analysis"]
    assert analysis["recording_id"] == "9001"
    assert analysis["stt"] == "deepgram"
    assert analysis["booking_intent"] is True
    assert analysis["party_size"] == 12
    assert analysis["event_date"] is not None
    assert analysis["booked"] is False
    assert analysis["missed_opportunity"] is True
    assert conversation.summary is not None
    assert "missed opportunity" in conversation.summary
    assert "12 guests" in conversation.summary
    async with app_ctx.sessions() as session:
        [message] = list(await session.scalars(select(Message)))
        [cost] = list(await session.scalars(select(CostLine)))
    assert message.text == said
    assert message.role == "customer"
    assert message.sentiment is not None
    assert cost.kind is CostKind.stt
    assert cost.item == "deepgram"
    assert cost.quantity == pytest.approx(3.0)
    [request] = deepgram.prerecorded_requests
    assert request.form["model"] == ["nova-3"]
    assert any(r.path.endswith("/recording/9001/content") for r in fake_ringcentral.requests)

    # Running the job again adds nothing.
    assert await analyse_call_recording({"app": app_ctx}, call.telephony_session_id) == "already analysed"


async def test_recording_is_found_through_the_call_log_when_events_omit_it(
    anon: httpx.AsyncClient,
    app_ctx: AppContext,
    fake_ringcentral: FakeRingCentral,
    deepgram: FakeDeepgram,
) -> None:
    deepgram.script_transcripts("What time do you close today? Thanks, bye.")
    call = staff_call(fake_ringcentral)
    fake_ringcentral.add_recording(
        "9002", wav_ulaw(tone_ulaw(300, 2000)), telephony_session_id=call.telephony_session_id
    )
    await deliver(
        anon, fake_ringcentral.session_event(call, sequence=5, status="Disconnected", event_time=IN_HOURS)
    )
    await run_call_jobs(app_ctx)

    [conversation] = await conversations(app_ctx)
    analysis = conversation.call_details["analysis"]
    assert analysis["recording_id"] == "9002"
    assert analysis["booking_intent"] is False
    assert analysis["missed_opportunity"] is False
    assert any("/call-log" in r.path for r in fake_ringcentral.requests)


async def test_session_event_with_a_wrong_verification_token_is_refused(
    anon: httpx.AsyncClient, app_ctx: AppContext, fake_ringcentral: FakeRingCentral
) -> None:
    call = staff_call(fake_ringcentral)
    event = fake_ringcentral.session_event(call, sequence=1, status="Proceeding", event_time=AFTER_HOURS)
    response = await post_ringcentral(anon, event, token="wrong")
    assert response.status_code == 403
    assert await conversations(app_ctx) == []
