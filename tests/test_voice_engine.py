"""The voice building blocks: the engine's call API on the real database, pacing, words."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.brain import Brain, BrainEvent, BrainRequest, ModelUsage, Role, TextDelta
from agent.brains.deterministic import DeterministicBrain
from agent.engine import ConversationEngine, UnknownAgentNumber
from agent.models import Conversation, CostKind, CostLine, Message, ToolCall, Transfer
from agent.tools.base import Effect, ToolBox
from agent.tools.registry import ALL_TOOLS
from agent.voice.calls import CallUsage, TurnDraft, VoiceCall, VoiceCalls
from agent.voice.pacer import FRAME_BYTES, Pacer, frames_of, pad_frame
from agent.voice.text import SentenceSplitter, greeting, is_backchannel, unfinished, wants_floor, word_key
from hibachi.context import AppContext

TZ = ZoneInfo("America/Los_Angeles")
NOW = datetime.combine(datetime.now(TZ).date(), datetime.min.time().replace(hour=11), TZ)
CALL_SID = "CA" + "1" * 32
CALLER = "+14085550123"
Sessions = async_sessionmaker[AsyncSession]


class StallingBrain:
    """Says one sentence, then stalls (a model that never finishes) until cancelled."""

    name = "stalling"

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        yield TextDelta("Let me look that up for you.")
        await asyncio.Event().wait()


def voice_calls(app_ctx: AppContext, brain: Brain | None = None) -> VoiceCalls:
    brain = brain or DeterministicBrain()
    engine = ConversationEngine(app_ctx, brain=brain, tools=ALL_TOOLS, clock=lambda: NOW)
    return VoiceCalls(engine)


async def start(calls: VoiceCalls) -> VoiceCall:
    return await calls.start_call(call_sid=CALL_SID, customer_phone=CALLER, agent_phone="+14085550199")


# ---- the engine's voice API ----------------------------------------------------------------


async def test_a_call_is_one_voice_conversation_per_call_sid(app_ctx: AppContext, db: Sessions) -> None:
    calls = voice_calls(app_ctx)
    first = await calls.start_call(
        call_sid=CALL_SID, customer_phone="+14085550123", agent_phone="+14085550199"
    )
    again = await calls.start_call(
        call_sid=CALL_SID, customer_phone="+14085550123", agent_phone="+14085550199"
    )
    assert first.conversation_id == again.conversation_id
    assert first.location_slug == "bay-area"
    assert first.staff_phone == "+14085550100"
    async with db() as session:
        [conversation] = await session.scalars(select(Conversation))
    assert conversation.channel.value == "voice"
    assert conversation.provider == "twilio"
    assert conversation.external_id == CALL_SID


async def test_a_call_to_a_number_we_do_not_own_is_refused(app_ctx: AppContext) -> None:
    with pytest.raises(UnknownAgentNumber):
        await voice_calls(app_ctx).start_call(
            call_sid=CALL_SID, customer_phone="+14085550123", agent_phone="+14155550100"
        )


async def test_a_turn_streams_text_and_records_both_sides(app_ctx: AppContext, db: Sessions) -> None:
    calls = voice_calls(app_ctx)
    call = await calls.start_call(
        call_sid=CALL_SID, customer_phone="+14085550123", agent_phone="+14085550199"
    )
    day = (NOW + timedelta(days=12)).date()
    pieces: list[str] = []
    text_when_done: list[str] = []
    result = await calls.turn(
        call,
        f"what's open on {day:%B} {day.day}",
        on_text=pieces.append,
        on_done=lambda: text_when_done.append("".join(pieces)),  # the last sentence may be spoken now
    )
    assert len(pieces) > 1  # sentence by sentence
    assert "".join(pieces).strip() == result.text
    assert [t.strip() for t in text_when_done] == [result.text]  # once, with the whole reply
    assert "6 pm" in result.text
    assert result.agent_message_id is not None
    await calls.annotate(
        result.agent_message_id, marks={"first_audio_sent": 412.0}, heard="Heard this much -"
    )
    async with db() as session:
        customer, agent = await session.scalars(select(Message).order_by(Message.id))
    assert customer.role is Role.customer
    assert customer.sentiment is not None
    assert agent.reply_to_id == customer.id
    assert agent.truncated
    assert agent.text == "Heard this much -"
    assert agent.marks["generated"] == result.text
    assert agent.marks["first_audio_sent"] == 412.0


class RecordingBrain:
    """Keeps every request it is given; puts the caller on a waitlist (as Dana) when asked."""

    name = "recording"

    def __init__(self) -> None:
        self.requests: list[BrainRequest] = []

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        self.requests.append(request)
        request.state["answered"] = [*request.state.get("answered", []), request.text]
        if "waitlist" in request.text:
            day = (NOW + timedelta(days=12)).date()
            arguments = {"event_date": day.isoformat(), "start_time": "18:00", "party_size": 8}
            await tools.call("join_waitlist", arguments | {"customer_name": "Dana Reyes"})
        yield TextDelta("Sure thing, anything else?")


async def test_each_turn_sees_what_was_said_and_heard_and_who_the_caller_became(app_ctx: AppContext) -> None:
    brain = RecordingBrain()
    calls = voice_calls(app_ctx, brain)
    call = await start(calls)
    await calls.say(call, "Hi, this is My Hibachi.")
    first = await calls.turn(call, "what's open next month", on_text=lambda _: None)
    assert first.agent_message_id is not None
    await calls.annotate(first.agent_message_id, marks={}, heard="Sure thing -")  # barged in
    await calls.turn(call, "put me on the waitlist", on_text=lambda _: None)
    draft = calls.draft(call, "and one more")  # the caller went on: thrown away
    async with asyncio.timeout(5):
        while not draft.has_text:  # noqa: ASYNC110  (the draft has no completion event)
            await asyncio.sleep(0.01)
    await draft.discard()
    await calls.turn(call, "thanks", on_text=lambda _: None)

    first_request, second, _discarded, third = brain.requests
    assert [(t.role, t.text) for t in first_request.history] == [(Role.agent, "Hi, this is My Hibachi.")]
    assert first_request.customer_name is None
    assert [(t.role, t.text) for t in second.history] == [
        (Role.agent, "Hi, this is My Hibachi."),
        (Role.customer, "what's open next month"),
        (Role.agent, "Sure thing -"),  # what the caller heard, not what was generated
    ]
    assert [(t.role, t.text) for t in third.history][-2:] == [
        (Role.customer, "put me on the waitlist"),
        (Role.agent, "Sure thing, anything else?"),
    ]
    assert third.customer_name == "Dana Reyes"  # the waitlist tool made the caller a customer
    # The brain's state carries over confirmed turns only (the draft worked on a copy).
    assert third.state["answered"] == ["what's open next month", "put me on the waitlist", "thanks"]


async def test_a_dropped_call_keeps_the_caller_words_and_the_partial_reply(
    app_ctx: AppContext, db: Sessions
) -> None:
    calls = voice_calls(app_ctx, StallingBrain())
    call = await calls.start_call(
        call_sid=CALL_SID, customer_phone="+14085550123", agent_phone="+14085550199"
    )
    heard: list[str] = []
    turn = asyncio.create_task(calls.turn(call, "can I book for Saturday", on_text=heard.append))
    async with asyncio.timeout(5):
        while not heard:  # noqa: ASYNC110  (the callback is the signal)
            await asyncio.sleep(0.01)
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    async with db() as session:
        customer, agent = await session.scalars(select(Message).order_by(Message.id))
    assert customer.text == "can I book for Saturday"
    assert agent.text == "Let me look that up for you."
    assert agent.truncated


async def test_ending_a_call_charges_audio_once(app_ctx: AppContext, db: Sessions) -> None:
    calls = voice_calls(app_ctx)
    call = await calls.start_call(
        call_sid=CALL_SID, customer_phone="+14085550123", agent_phone="+14085550199"
    )
    usage = CallUsage(
        stt_engine="deepgram", stt_seconds=90.0, tts_engine="deepgram", tts_characters=1000, call_seconds=95.0
    )
    await calls.end_call(call, usage)
    await calls.end_call(call, usage)
    async with db() as session:
        lines = {line.kind: line for line in await session.scalars(select(CostLine))}
        count = await session.scalar(select(func.count()).select_from(CostLine))
        conversation = await session.get_one(Conversation, call.conversation_id)
    assert count == 3
    assert conversation.ended_at is not None
    assert float(lines[CostKind.stt].usd) == pytest.approx(90 / 60 * 0.0048)
    assert float(lines[CostKind.tts].usd) == pytest.approx(0.03)
    assert float(lines[CostKind.voice].usd) == pytest.approx(2 * 0.0085)  # two started minutes


# ---- pacing ----------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []

    async def media(self, ulaw: bytes) -> None:
        self.sent.append((time.monotonic(), "media"))

    async def mark(self, name: str) -> None:
        self.sent.append((time.monotonic(), f"mark:{name}"))


async def test_pacer_sends_a_frame_every_20ms_after_a_small_lead() -> None:
    out = Recorder()
    pacer = Pacer(out.media, out.mark, lead=3)
    runner = asyncio.create_task(pacer.run())
    pacer.push_audio([b"\x00" * FRAME_BYTES] * 25)
    pacer.push_mark("end")
    async with asyncio.timeout(3):
        while not out.sent or out.sent[-1][1] != "mark:end":  # noqa: ASYNC110  (polling the recorder)
            await asyncio.sleep(0.01)
    runner.cancel()
    times = [t for t, kind in out.sent if kind == "media"]
    assert len(times) == 25
    assert times[3] - times[0] < 0.01  # the lead goes out at once
    elapsed = times[-1] - times[0]
    assert 0.40 <= elapsed <= 0.50  # 22 paced frames x 20 ms, no drift
    assert pacer.jitter.frames >= 20
    assert pacer.jitter.mean_late < 0.01


async def test_pacer_counts_frames_that_were_already_late_as_jitter() -> None:
    class StallingRecorder(Recorder):
        async def media(self, ulaw: bytes) -> None:
            await super().media(ulaw)
            if len(self.sent) == 6:
                time.sleep(0.08)  # noqa: ASYNC251  (blocks the loop on purpose: the next frames go out late)

    out = StallingRecorder()
    pacer = Pacer(out.media, out.mark, lead=2)
    runner = asyncio.create_task(pacer.run())
    pacer.push_audio([b"\x00" * FRAME_BYTES] * 12)
    pacer.push_mark("end")
    async with asyncio.timeout(3):
        while not out.sent or out.sent[-1][1] != "mark:end":  # noqa: ASYNC110  (polling the recorder)
            await asyncio.sleep(0.01)
    runner.cancel()
    assert pacer.jitter.max_late >= 0.05


async def test_pacer_clear_drops_queued_audio_at_once() -> None:
    out = Recorder()
    pacer = Pacer(out.media, out.mark, lead=2)
    runner = asyncio.create_task(pacer.run())
    pacer.push_audio([b"\x00" * FRAME_BYTES] * 50)
    pacer.push_mark("never")
    await asyncio.sleep(0.1)
    dropped = pacer.clear()
    cleared_at = time.monotonic()
    await asyncio.sleep(0.1)
    runner.cancel()
    assert dropped == ["never"]
    assert sum(1 for t, _ in out.sent if t > cleared_at) == 0
    assert len(out.sent) < 12


def test_audio_is_cut_into_whole_frames_and_padded_with_silence() -> None:
    rest = bytearray()
    assert frames_of(b"\x01" * 250, rest) == [b"\x01" * 160]
    assert len(rest) == 90
    assert len(frames_of(b"\x01" * 100, rest)) == 1
    assert pad_frame(b"\x01" * 30) == b"\x01" * 30 + b"\xff" * 130


# ---- words -----------------------------------------------------------------------------------


def test_streamed_text_is_split_into_sentences_as_they_complete() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("We have 6 pm and 8 pm open on Saturday") == []
    assert splitter.push(". Dr. Lee's party is at 100 Market St. in San Jose. Want") == [
        "We have 6 pm and 8 pm open on Saturday.",
        "Dr. Lee's party is at 100 Market St. in San Jose.",
    ]
    assert splitter.push(" one?") == []
    assert splitter.flush() == ["Want one?"]


@pytest.mark.parametrize("said", ["mhm", "Yeah.", "okay", "uh huh", "right", "sure", "yeah okay", "Mm-hmm."])
def test_backchannels_never_take_the_floor(said: str) -> None:
    assert is_backchannel(said)
    assert not wants_floor(said, seconds=1.0)


@pytest.mark.parametrize(("said", "seconds"), [("wait", 0.2), ("make it Sunday", 0.3), ("Saturday", 0.5)])
def test_real_words_take_the_floor(said: str, seconds: float) -> None:
    assert wants_floor(said, seconds=seconds)


def test_a_short_single_word_does_not_take_the_floor() -> None:
    assert not wants_floor("Saturday", seconds=0.2)


@pytest.mark.parametrize(
    "said", ["I'd like a table for", "what's open on the", "can I book for um", "Me and my", "How about"]
)
def test_words_that_stop_mid_sentence_are_unfinished(said: str) -> None:
    assert unfinished(word_key(said))


@pytest.mark.parametrize("said", ["What's open on December 12?", "Thank you", "six pm for ten", "Yes.", ""])
def test_a_request_that_could_end_here_is_not_unfinished(said: str) -> None:
    assert not unfinished(word_key(said))


def test_greeting_names_the_location_and_time_of_day() -> None:
    evening = NOW.replace(hour=19)
    assert greeting("My Hibachi Bay Area", "America/Los_Angeles", evening).startswith(
        "Good evening, thanks for calling My Hibachi in the Bay Area."
    )
    assert "My Hibachi in Sacramento" in greeting("My Hibachi Sacramento", "America/Los_Angeles", NOW)


# ---- pre-emptive drafts ---------------------------------------------------------------------


class HandOffBrain:
    """Says a sentence, then hands the caller to staff (an effectful tool), then says another."""

    name = "hand-off"

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        yield TextDelta("Let me get someone for you. ")
        await tools.call("transfer_to_staff", {"reason": "requested", "summary": "Wants a person."})
        yield TextDelta("Passing you over now.")


async def parked(draft: TurnDraft, tool: str) -> None:
    async with asyncio.timeout(5):
        while draft.held_tool != tool:  # noqa: ASYNC110  (the draft's brain runs in its own task)
            await asyncio.sleep(0.01)


async def counts(db: Sessions) -> tuple[int, int, int]:
    async with db() as session:
        return (
            await session.scalar(select(func.count()).select_from(Message)) or 0,
            await session.scalar(select(func.count()).select_from(ToolCall)) or 0,
            await session.scalar(select(func.count()).select_from(Transfer)) or 0,
        )


async def test_a_discarded_draft_leaves_no_trace(app_ctx: AppContext, db: Sessions) -> None:
    calls = voice_calls(app_ctx, HandOffBrain())
    call = await start(calls)
    draft = calls.draft(call, "get me a person")
    await parked(draft, "transfer_to_staff")
    assert draft.has_text  # it thought ahead, but said nothing yet
    await draft.discard()
    assert await counts(db) == (0, 0, 0)


class SpendingBrain:
    """Spends 1000 prompt tokens on a model request, then answers; a draft of "hold on" stalls."""

    name = "spending"

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        yield ModelUsage(model="gpt-4o-mini", prompt_tokens=1000, completion_tokens=7)
        if "hold on" in request.text:
            await asyncio.Event().wait()
        yield TextDelta("Sure thing.")


async def llm_lines(db: Sessions) -> list[tuple[int | None, float]]:
    async with db() as session:
        lines = await session.scalars(
            select(CostLine).where(CostLine.kind == CostKind.llm).order_by(CostLine.id)
        )
        return [(line.message_id, float(line.quantity)) for line in lines]


async def test_tokens_a_discarded_draft_spent_are_charged_with_the_next_reply_and_at_the_call_end(
    app_ctx: AppContext, db: Sessions
) -> None:
    calls = voice_calls(app_ctx, SpendingBrain())
    call = await start(calls)
    for _ in range(2):
        draft = calls.draft(call, "hold on")
        async with asyncio.timeout(5):
            while not draft.usages:  # noqa: ASYNC110  (the draft's brain runs in its own task)
                await asyncio.sleep(0.01)
        await draft.discard()
    assert await llm_lines(db) == []  # held: no transaction of their own

    reply = await calls.turn(call, "thanks", on_text=lambda _: None)
    lines = await llm_lines(db)
    assert sorted(lines, key=lambda line: line[0] or 0) == [
        (None, 1007.0),
        (None, 1007.0),
        (reply.agent_message_id, 1007.0),
    ]

    last = calls.draft(call, "hold on")
    async with asyncio.timeout(5):
        while not last.usages:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await last.discard()
    await calls.end_call(call, CallUsage("deepgram", 1.0, "deepgram", 10, 2.0))
    assert len(await llm_lines(db)) == 4


class ReRaisingBrain:
    """Says a sentence, then waits on its model like an HTTP client that re-raises `exc`
    from `except ... as exc`: a cancellation leaves a frame <-> exception cycle behind."""

    name = "re-raising"

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        yield TextDelta("Let me look that up for you.")
        try:
            await asyncio.Event().wait()
        except BaseException as exc:
            raise exc


async def test_a_discarded_draft_is_freed_at_once_not_left_to_the_cycle_collector(
    app_ctx: AppContext,
) -> None:
    calls = voice_calls(app_ctx, ReRaisingBrain())
    call = await start(calls)
    gc.disable()  # what is still alive after the discard would wait for it
    try:
        draft = calls.draft(call, "what's open on friday")
        async with asyncio.timeout(5):
            while not draft.has_text:  # noqa: ASYNC110  (the draft's brain runs in its own task)
                await asyncio.sleep(0.01)
        freed = weakref.ref(draft)
        await draft.discard()
        del draft
        assert freed() is None
    finally:
        gc.enable()


async def test_a_confirmed_draft_releases_its_text_then_its_effects(
    app_ctx: AppContext, db: Sessions
) -> None:
    calls = voice_calls(app_ctx, HandOffBrain())
    call = await start(calls)
    draft = calls.draft(call, "get me a person")
    await parked(draft, "transfer_to_staff")
    assert await counts(db) == (0, 0, 0)
    heard: list[str] = []
    result = await draft.confirm("Get me a person.", on_text=heard.append)
    assert heard == ["Let me get someone for you. ", "Passing you over now."]
    assert result.effect is Effect.transfer
    assert result.transfer_to == "+14085550100"
    async with db() as session:
        said = list(await session.scalars(select(Message).order_by(Message.id)))
        [transfer] = await session.scalars(select(Transfer))
    assert [(m.role, m.text) for m in said] == [
        (Role.customer, "Get me a person."),
        (Role.agent, "Let me get someone for you. Passing you over now."),
    ]
    assert said[1].reply_to_id == said[0].id
    assert transfer.staff_phone == "+14085550100"


def test_word_keys_ignore_case_and_punctuation_but_not_numbers() -> None:
    assert word_key("Yes.") == word_key("yes")
    assert word_key("Hi, what's open on December 3?") == word_key("hi whats open on december 3")
    assert word_key("what's open on December") != word_key("what's open on December 3")
    assert word_key("6pm please") != word_key("6 pm please")  # smart-format differences: think again
