"""Phone calls end to end over real WebSockets: simulated Twilio -> /twilio/media -> VoiceSession.

The app runs under uvicorn in the test's own event loop; `SimulatedCall` plays Twilio
(webhook, paced caller frames, marks echoed at playback, `clear` honoured). The engine
is the real one (deterministic brain, all tools, real database, fixed clock in staff
hours). Speech providers are small scripted stand-ins for the external STT/TTS: the
test says when the caller's words are recognised, and the TTS turns each sentence
into a tone of a known length.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent.brain import Brain, BrainEvent, BrainRequest, Role
from agent.brains.deterministic import DeterministicBrain
from agent.brains.fallback import build_brain
from agent.engine import ConversationEngine
from agent.models import Conversation, CostKind, CostLine, Message, ToolCall, Transfer, TransferReason
from agent.speech.base import SpeechStarted, STTCapabilities, STTEvent, Transcript, UtteranceEnd
from agent.speech.deepgram import DeepgramSTT, DeepgramTTS
from agent.tools.base import ToolBox
from agent.tools.registry import ALL_TOOLS
from agent.voice.calls import GatedToolBox
from agent.voice.session import VoiceConfig
from agent.voice.text import FILLER, STILL_THERE, TRANSFER_FAILED
from booking_tools.bookings.models import Booking
from booking_tools.messaging.models import OutboundMessage
from hibachi.app import create_app
from hibachi.context import AppContext
from hibachi.settings import Settings
from telephony.audio import SILENT_FRAME, tone_ulaw
from telephony.fakes import FakeTwilio
from telephony.fakes.deepgram_server import DEFAULT_API_KEY as DEEPGRAM_KEY
from telephony.fakes.deepgram_server import FakeDeepgram
from telephony.fakes.openai_server import DEFAULT_API_KEY as OPENAI_KEY
from telephony.fakes.openai_server import FakeOpenAI, Stall
from telephony.twilio import codec
from telephony.twilio.call_sim import SimulatedCall
from telephony.twilio.signature import SIGNATURE_HEADER, sign
from telephony.twilio.voice import stream_token, stream_url
from tests.conftest import PUBLIC_BASE_URL

TZ = ZoneInfo("America/Los_Angeles")
CALLER = "+14085550123"
BAY_AREA_LINE = "+14085550199"
STAFF_LINE = "+14085550100"
Sessions = async_sessionmaker[AsyncSession]


def in_staff_hours() -> datetime:
    return datetime.combine(datetime.now(TZ).date(), time(11, 0), TZ)


EVENT_DAY = in_staff_hours().date() + timedelta(days=12)


def spoken_day(day: date) -> str:
    return f"{day:%B} {day.day}"


# ---- scripted speech providers (stand-ins for Deepgram) ----------------------------------------


class ScriptedStream:
    """An STT stream whose recognition events the test emits; times follow the audio received."""

    def __init__(self) -> None:
        self.audio_bytes = 0
        self._events: asyncio.Queue[STTEvent | None] = asyncio.Queue()
        self.closed = False

    @property
    def position(self) -> float:
        return self.audio_bytes / 8000

    async def send(self, ulaw: bytes) -> None:
        self.audio_bytes += len(ulaw)

    async def finalize(self) -> None:
        return None

    async def events(self) -> AsyncIterator[STTEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def close(self) -> float:
        self.closed = True
        self._events.put_nowait(None)
        return self.position

    def speech_started(self) -> None:
        self._events.put_nowait(SpeechStarted(at=self.position))

    def interim(self, text: str, seconds: float = 0.5) -> None:
        end = self.position
        self._events.put_nowait(
            Transcript(text, is_final=False, speech_final=False, start=end - seconds, end=end)
        )

    def final(self, text: str, *, speech_final: bool = True, seconds: float = 0.8) -> None:
        end = self.position
        self._events.put_nowait(
            Transcript(text, is_final=True, speech_final=speech_final, start=end - seconds, end=end)
        )

    def final_until(self, text: str, *, end: float, seconds: float = 0.8) -> None:
        """A final whose words ended at `end` s of audio (silence may have followed)."""
        self._events.put_nowait(
            Transcript(text, is_final=True, speech_final=True, start=end - seconds, end=end)
        )

    def utterance_end(self) -> None:
        self._events.put_nowait(UtteranceEnd(last_word_end=self.position))

    def says(self, text: str) -> None:
        """A whole caller utterance: speech start, an interim, the final with end of turn."""
        self.speech_started()
        self.interim(" ".join(text.split()[:2]))
        self.final(text)


class ScriptedSTT:
    name = "scripted"
    capabilities = STTCapabilities(interim_results=True, endpointing=True, vad_events=True)

    def __init__(self) -> None:
        self.streams: list[ScriptedStream] = []

    async def open(self) -> ScriptedStream:
        stream = ScriptedStream()
        self.streams.append(stream)
        return stream


class ToneTTS:
    """Each sentence becomes `frames_per_word` 20 ms frames of tone per word, in 100 ms chunks."""

    name = "tone"

    def __init__(self) -> None:
        self.frames_per_word = 2
        self.first_byte_delay = 0.0
        self.texts: list[str] = []

    def prepare(self) -> None:
        """Nothing to open."""

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.texts.append(text)
        if self.first_byte_delay:
            await asyncio.sleep(self.first_byte_delay)
        audio = tone_ulaw(440, 20 * self.frames_per_word * max(1, len(text.split())))
        for start in range(0, len(audio), 800):
            yield audio[start : start + 800]


class SlowBrain:
    """A brain whose model stalls before answering (a slow tool or LLM): delegates to another."""

    def __init__(self, inner: Brain, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.name = inner.name

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        await asyncio.sleep(self.delay)
        async for event in self.inner.respond(request, tools):
            yield event


# ---- the running server ---------------------------------------------------------------------


@dataclass
class Voice:
    url: str
    ctx: AppContext
    settings: Settings
    stt: ScriptedSTT
    tts: ToneTTS
    install_brain: Callable[[Brain], ConversationEngine]
    configure: Callable[..., None]
    calls: list[SimulatedCall] = field(default_factory=list)

    def call(self, **kwargs: Any) -> SimulatedCall:
        sim = SimulatedCall(
            self.url,
            PUBLIC_BASE_URL,
            self.settings.twilio_auth_token,
            self.settings.twilio_account_sid,
            CALLER,
            BAY_AREA_LINE,
            timeout=10.0,
            **kwargs,
        )
        self.calls.append(sim)
        return sim

    async def stream(self, index: int = 0) -> ScriptedStream:
        await eventually(lambda: len(self.stt.streams) > index)
        return self.stt.streams[index]


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until `predicate()` holds (checked every 10 ms); fail after `within` seconds."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110  (the state lives in the simulator, not behind an Event)
            await asyncio.sleep(0.01)


async def until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until the async `check()` holds (a database condition), polled every 20 ms."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110  (the condition is a database row)
            await asyncio.sleep(0.02)


@pytest.fixture
def voice_app(settings: Settings, app_ctx: AppContext) -> FastAPI:
    application = create_app(settings, context=app_ctx)
    application.state.ctx = app_ctx
    return application


@pytest.fixture
async def voice(
    voice_app: FastAPI, app_ctx: AppContext, settings: Settings, fake_twilio: FakeTwilio
) -> AsyncIterator[Voice]:
    saved = {key: app_ctx.extras.get(key) for key in ("engine", "stt", "tts", "voice_config")}
    now = in_staff_hours()
    engines: list[ConversationEngine] = []

    def install_brain(brain: Brain) -> ConversationEngine:
        engine = ConversationEngine(app_ctx, brain=brain, tools=ALL_TOOLS, clock=lambda: now)
        app_ctx.extras["engine"] = engine
        engines.append(engine)
        return engine

    def configure(**changes: Any) -> None:
        app_ctx.extras["voice_config"] = VoiceConfig(**{"silence_timeout": 30.0, **changes})

    install_brain(DeterministicBrain())
    configure()
    stt, tts = ScriptedSTT(), ToneTTS()
    app_ctx.extras["stt"], app_ctx.extras["tts"] = stt, tts
    server = uvicorn.Server(
        uvicorn.Config(voice_app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    harness = Voice(f"http://127.0.0.1:{port}", app_ctx, settings, stt, tts, install_brain, configure)
    try:
        yield harness
    finally:
        for sim in harness.calls:
            if not sim.closed:
                await sim.hang_up()
        server.should_exit = True
        await serving
        for engine in engines:
            await engine.close()  # an LLM brain's HTTP client with it
        for key, value in saved.items():
            if value is None:
                app_ctx.extras.pop(key, None)
            else:
                app_ctx.extras[key] = value


# ---- reading the database --------------------------------------------------------------------


async def conversation(db: Sessions, call_sid: str) -> Conversation | None:
    async with db() as session:
        return await session.scalar(select(Conversation).where(Conversation.external_id == call_sid))


async def messages(db: Sessions) -> list[Message]:
    async with db() as session:
        return list(await session.scalars(select(Message).order_by(Message.id)))


async def agent_messages(db: Sessions) -> list[Message]:
    return [m for m in await messages(db) if m.role is Role.agent]


async def costs(db: Sessions) -> dict[CostKind, CostLine]:
    async with db() as session:
        return {line.kind: line for line in await session.scalars(select(CostLine))}


async def close_code(ws: ClientConnection) -> int | None:
    """Read (and drop) whatever the server sends until it closes the socket; its close code."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(5):
            async for _ in ws:
                pass
    return ws.close_code


def signed(settings: Settings) -> dict[str, str]:
    """The handshake header Twilio sends: its signature over our stream URL (protocols.md 3.5)."""
    return {SIGNATURE_HEADER: sign(stream_url(settings), {}, settings.twilio_auth_token)}


async def open_stream(ws: ClientConnection, settings: Settings, *, call_sid: str, stream_sid: str) -> None:
    """Send what Twilio sends first on a call's media stream: `connected`, then a valid `start`."""
    await ws.send(codec.connected_message())
    await ws.send(
        codec.start_message(
            stream_sid=stream_sid,
            call_sid=call_sid,
            account_sid=settings.twilio_account_sid,
            custom_parameters={
                "from": CALLER,
                "to": BAY_AREA_LINE,
                "call_sid": call_sid,
                "token": stream_token(settings, call_sid),
            },
        )
    )


def media_after(sim: SimulatedCall, moment: float) -> int:
    return sum(1 for chunk in sim.agent_chunks if chunk.received_at > moment)


# ---- tests --------------------------------------------------------------------------------------


async def test_greeting_arrives_paced_20ms_apart_and_is_in_the_transcript(voice: Voice, db: Sessions) -> None:
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.2)
        arrivals = [chunk.received_at for chunk in sim.agent_chunks]
        assert all(len(chunk.payload) == 160 for chunk in sim.agent_chunks)
        # 16 words x 2 frames: the first few frames lead, the rest come one per 20 ms.
        assert len(arrivals) >= 30
        gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
        median = gaps[len(gaps) // 2]
        assert 0.015 <= median <= 0.025
        assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 4) * 0.018
        # Marks come back as playback passes them.
        assert sim.marks
        assert all(m.echoed_at is not None and not m.cleared for m in sim.marks)
        [greeting] = await agent_messages(db)
        assert greeting.text.startswith("Good morning, thanks for calling My Hibachi in the Bay Area.")
        assert greeting.delivery == "voice"
        assert not greeting.truncated


async def test_caller_turn_gets_a_spoken_reply_a_transcript_and_cost(voice: Voice, db: Sessions) -> None:
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        greeting_frames = len(sim.agent_chunks)
        stream.says(f"Hi, what's open on {spoken_day(EVENT_DAY)}?")
        await eventually(lambda: len(sim.agent_chunks) > greeting_frames + 10)
        await sim.wait_for_agent_silence(quiet_for=0.2, require_audio=False)
        call_sid = sim.call_sid
    await until(lambda: _ended(db, call_sid))

    customer, reply = [m for m in await messages(db) if m.reply_to_id is not None or m.role is Role.customer]
    assert customer.role is Role.customer
    assert customer.text == f"Hi, what's open on {spoken_day(EVENT_DAY)}?"
    assert customer.sentiment is not None
    assert reply.reply_to_id == customer.id
    assert "6 pm" in reply.text
    assert not reply.truncated
    assert {"speech_end", "final_transcript", "first_token", "first_sentence", "first_tts_byte"} <= set(
        reply.marks
    )
    assert "first_audio_sent" in reply.marks
    assert reply.marks["final_transcript"] <= reply.marks["first_token"] <= reply.marks["first_audio_sent"]
    # The reply was spoken sentence by sentence, as the brain produced it.
    assert any("6 pm" in text for text in voice.tts.texts)
    async with db() as session:
        tools = [c.name for c in await session.scalars(select(ToolCall))]
    assert "check_availability" in tools
    found = await conversation(db, call_sid)
    assert found is not None
    assert found.ended_at is not None
    assert found.channel.value == "voice"
    lines = await costs(db)
    assert lines[CostKind.stt].item == "scripted"
    assert lines[CostKind.stt].quantity > 0
    assert lines[CostKind.tts].quantity == sum(len(t) for t in voice.tts.texts)
    assert lines[CostKind.voice].item == "twilio"
    assert lines[CostKind.voice].quantity > 0


async def _ended(db: Sessions, call_sid: str) -> bool:
    found = await conversation(db, call_sid)
    return found is not None and found.ended_at is not None


async def test_barge_in_stops_audio_within_a_frame_clears_and_truncates_the_reply(
    voice: Voice, db: Sessions
) -> None:
    voice.configure(filler_after=5.0)  # a loaded machine must not make the first mark a filler's
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        voice.tts.frames_per_word = 8  # 160 ms a word: the reply takes several seconds
        marks_before = len(sim.marks)
        stream.says(f"What's open on {spoken_day(EVENT_DAY)}?")
        # Let the reply's first sentence play out completely, then talk over the rest.
        await eventually(lambda: any(m.echoed_at for m in sim.marks[marks_before:]), within=10)
        stream.speech_started()
        stream.interim("wait actually make it")
        await eventually(lambda: bool(sim.clears))
        cleared_at = sim.clears[0].received_at
        await sim.pause(0.2)
        assert media_after(sim, cleared_at) <= 1
        stream.final("wait actually make it Sunday")
        await sim.wait_for_agent_silence(quiet_for=0.2, require_audio=False)

    await until(lambda: _ended(db, sim.call_sid))
    replies = [m for m in await agent_messages(db) if m.reply_to_id is not None]
    first = replies[0]
    assert first.truncated
    generated = first.marks["generated"]
    assert "6 pm" in generated
    assert first.text
    assert len(first.text) < len(generated)
    assert generated.startswith(first.text.rstrip(" -").rsplit(" ", 1)[0])
    # The cut came after the first sentence, whose mark came back before the barge-in.
    first_sentence = next(t for t in voice.tts.texts if t in generated)
    assert first.text.startswith(first_sentence)
    customers = [m.text for m in await messages(db) if m.role is Role.customer]
    assert customers[-1] == "wait actually make it Sunday"


async def test_backchannel_during_agent_speech_does_not_interrupt(voice: Voice, db: Sessions) -> None:
    voice.tts.frames_per_word = 5
    async with voice.call() as sim:
        stream = await voice.stream()
        await eventually(lambda: len(sim.agent_chunks) > 5)
        stream.speech_started()
        stream.interim("mhm", seconds=0.6)
        stream.final("mhm", seconds=0.6)
        stream.interim("yeah okay", seconds=0.7)
        stream.final("yeah okay", seconds=0.7)
        await sim.wait_for_agent_silence(quiet_for=0.2)
        assert sim.clears == []
        assert all(not m.cleared for m in sim.marks)
    [greeting] = await messages(db)
    assert not greeting.truncated


async def test_pressing_0_transfers_to_staff_with_a_summary_text(
    voice: Voice, db: Sessions, fake_twilio: FakeTwilio
) -> None:
    async with voice.call() as sim:
        await eventually(lambda: len(sim.agent_chunks) > 3)
        await sim.press("0")
        await sim.wait_closed()
        assert sim.clears  # the greeting was cut for the hand-off
    async with db() as session:
        [transfer] = await session.scalars(select(Transfer))
        staff_texts = list(
            await session.scalars(select(OutboundMessage).where(OutboundMessage.to_phone == STAFF_LINE))
        )
    assert transfer.reason is TransferReason.dtmf
    assert transfer.staff_phone == STAFF_LINE
    assert len(staff_texts) == 1
    assert "pressed 0" in staff_texts[0].body
    [update] = [u for u in fake_twilio.call_updates if u["call_sid"] == sim.call_sid]
    assert "<Dial" in update["Twiml"]
    assert f"<Number>{STAFF_LINE}</Number>" in update["Twiml"]
    said = [m.text for m in await agent_messages(db)]
    assert any("passing you to our team" in text for text in said)
    await until(lambda: _ended(db, sim.call_sid))


async def test_with_the_key_menu_pressing_1_starts_a_booking(voice: Voice, db: Sessions) -> None:
    voice.configure(menu=True)
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        await sim.press("1")  # the key answers for the caller
        await eventually(lambda: any("What date" in text for text in voice.tts.texts))
        await sim.wait_for_agent_silence(quiet_for=0.15, require_audio=False)
        call_sid = sim.call_sid
    await until(lambda: _ended(db, call_sid))
    said = await messages(db)
    assert said[0].text.startswith("Good ")
    assert "Press 1 to book a party, 2 for prices" in said[0].text
    customer = [m for m in said if m.role is Role.customer]
    assert [m.text for m in customer] == ["I'd like to book a hibachi party."]
    assert "What date" in said[-1].text


async def test_menu_keys_mean_nothing_without_the_menu(voice: Voice, db: Sessions) -> None:
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        await sim.press("1")
        await asyncio.sleep(0.3)
        call_sid = sim.call_sid
    await until(lambda: _ended(db, call_sid))
    said = await messages(db)
    assert "Press 1" not in said[0].text
    assert [m for m in said if m.role is Role.customer] == []


async def test_slow_brain_gets_a_filler_before_the_answer(voice: Voice, db: Sessions) -> None:
    voice.install_brain(SlowBrain(DeterministicBrain(), delay=0.5))
    voice.configure(filler_after=0.15)
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        stream.says(f"What's open on {spoken_day(EVENT_DAY)}?")
        await eventually(lambda: any("6 pm" in t for t in voice.tts.texts), within=5)
        await sim.wait_for_agent_silence(quiet_for=0.2, require_audio=False)
    filler_at = voice.tts.texts.index(FILLER)
    answer_at = next(i for i, t in enumerate(voice.tts.texts) if "6 pm" in t)
    assert filler_at < answer_at
    reply = next(m for m in await agent_messages(db) if m.reply_to_id is not None)
    assert reply.marks["filler"] < reply.marks["first_token"]
    assert FILLER not in reply.text


async def test_fast_brain_gets_no_filler(voice: Voice) -> None:
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        stream.says(f"What's open on {spoken_day(EVENT_DAY)}?")
        await eventually(lambda: any("6 pm" in t for t in voice.tts.texts))
    assert FILLER not in voice.tts.texts


async def test_caller_hanging_up_mid_reply_keeps_transcript_and_cost(voice: Voice, db: Sessions) -> None:
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        voice.tts.frames_per_word = 10
        stream.says(f"What's open on {spoken_day(EVENT_DAY)}?")
        await eventually(lambda: any("6 pm" in t for t in voice.tts.texts))
        await sim.pause(0.3)
    await until(lambda: _ended(db, sim.call_sid))
    said = await messages(db)
    assert [m.role for m in said] == [Role.agent, Role.customer, Role.agent]
    reply = said[-1]
    assert reply.truncated
    assert len(reply.text) < len(reply.marks["generated"])
    lines = await costs(db)
    assert {CostKind.stt, CostKind.tts, CostKind.voice} <= set(lines)


async def test_silence_gets_a_reprompt_then_a_polite_hang_up(
    voice: Voice, db: Sessions, fake_twilio: FakeTwilio
) -> None:
    voice.configure(silence_timeout=0.3)
    async with voice.call() as sim:
        await sim.wait_closed()
    said = [m.text for m in await agent_messages(db)]
    assert said[1] == STILL_THERE
    assert "goodbye" in said[2].lower()
    [update] = [u for u in fake_twilio.call_updates if u["call_sid"] == sim.call_sid]
    assert update["Status"] == "completed"
    await until(lambda: _ended(db, sim.call_sid))


async def test_malformed_frame_closes_only_that_call(
    voice: Voice, db: Sessions, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with voice.call() as good:
        await good.wait_for_agent_silence(quiet_for=0.1)
        call_sid = "CA" + "b" * 32
        socket = voice.url.replace("http", "ws") + "/twilio/media"
        async with connect(socket, additional_headers=signed(settings)) as bad:
            await open_stream(bad, settings, call_sid=call_sid, stream_sid="MZ" + "b" * 32)
            await bad.send("{not json")
            assert await close_code(bad) == 1008
        assert f"malformed Media Streams message on {call_sid}" in caplog.text
        await until(lambda: _ended(db, call_sid))
        # The other call goes on answering.
        stream = voice.stt.streams[0]
        stream.says(f"What's open on {spoken_day(EVENT_DAY)}?")
        await eventually(lambda: any("6 pm" in t for t in voice.tts.texts))
        assert not good.closed


async def test_turn_marks_count_from_the_real_speech_end_when_early_frames_came_late(
    voice: Voice, db: Sessions, settings: Settings
) -> None:
    """Frames held up at the start of a stream arrive in a burst; the marks are not fooled by it."""
    call_sid = "CA" + "d" * 32
    stream_sid = "MZ" + "d" * 32
    socket = voice.url.replace("http", "ws") + "/twilio/media"
    loop = asyncio.get_running_loop()
    async with connect(socket, additional_headers=signed(settings)) as ws:
        await open_stream(ws, settings, call_sid=call_sid, stream_sid=stream_sid)
        await eventually(lambda: len(voice.stt.streams) == 1)
        stream = voice.stt.streams[0]

        async def send_frame(n: int) -> None:
            await ws.send(
                codec.media_event_message(
                    stream_sid=stream_sid,
                    sequence_number=n + 2,
                    chunk=n + 1,
                    timestamp_ms=20 * n,
                    payload=SILENT_FRAME,
                )
            )

        captured = loop.time()  # the caller's audio begins
        await asyncio.sleep(0.5)
        for n in range(25):  # its first 0.5 s were held up on the way and arrive at once...
            await send_frame(n)
        for n in range(25, 65):  # ...the rest in real time, to 1.3 s of audio
            await asyncio.sleep(max(0.0, captured + (n + 1) * 0.02 - loop.time()))
            await send_frame(n)
        # a quiet line goes to the STT a few frames at a time: all but the last batch's start is there
        await eventually(lambda: stream.audio_bytes >= 60 * 160)
        spoken_until = captured + 1.0  # the caller's words ended at 1.0 s of audio
        text = f"What's open on {spoken_day(EVENT_DAY)}?"
        stream.final_until(text, end=1.0)
        final_at = loop.time()

        async def replied() -> bool:
            return any(m.reply_to_id is not None for m in await agent_messages(db))

        await until(replied)
    [reply] = [m for m in await agent_messages(db) if m.reply_to_id is not None]
    expected = (final_at - spoken_until) * 1000  # ~300 ms of silence before the final
    assert reply.marks["final_transcript"] == pytest.approx(expected, abs=100)


async def test_stream_with_a_bad_token_is_refused(voice: Voice, settings: Settings) -> None:
    socket = voice.url.replace("http", "ws") + "/twilio/media"
    call_sid = "CA" + "c" * 32
    async with connect(socket, additional_headers=signed(settings)) as ws:
        await ws.send(codec.connected_message())
        await ws.send(
            codec.start_message(
                stream_sid="MZ" + "c" * 32,
                call_sid=call_sid,
                account_sid=settings.twilio_account_sid,
                custom_parameters={"from": CALLER, "to": BAY_AREA_LINE, "token": "forged"},
            )
        )
        assert await close_code(ws) == 1008
    assert voice.stt.streams == []


async def test_a_whole_booking_call_through_deepgram(voice: Voice, db: Sessions) -> None:
    with FakeDeepgram(stt_final_delay=0.05, tts_first_byte_delay=0.02, chars_per_second=120) as deepgram:
        deepgram.script_transcripts(
            f"Hi, what's open on {spoken_day(EVENT_DAY)}?",
            "6pm please, for 15 adults and 2 kids",
            "Jane Roe",
            "yes",
        )
        voice.ctx.extras["stt"] = DeepgramSTT(api_key=DEEPGRAM_KEY, base_url=deepgram.base_url)
        voice.ctx.extras["tts"] = DeepgramTTS(api_key=DEEPGRAM_KEY, base_url=deepgram.base_url)
        async with voice.call() as sim:
            await sim.wait_for_agent_silence(quiet_for=0.3)
            for _ in range(4):
                await sim.say(tone_ulaw(300, 600))
                await sim.wait_for_agent_silence(quiet_for=0.4)
            assert all(turn.latency is not None for turn in sim.turns)
    await until(lambda: _ended(db, sim.call_sid))
    async with db() as session:
        [booking] = await session.scalars(select(Booking))
    assert (booking.event_date, booking.start_time, booking.adults, booking.children) == (
        EVENT_DAY,
        time(18, 0),
        15,
        2,
    )
    said = await messages(db)
    assert [m.text for m in said if m.role is Role.customer] == [
        f"Hi, what's open on {spoken_day(EVENT_DAY)}?",
        "6pm please, for 15 adults and 2 kids",
        "Jane Roe",
        "yes",
    ]
    assert booking.code in said[-1].text
    lines = await costs(db)
    assert lines[CostKind.stt].item == "deepgram"
    assert lines[CostKind.stt].usd > 0
    assert lines[CostKind.tts].item == "deepgram"
    assert lines[CostKind.tts].usd > 0


# ---- pre-emptive generation ----------------------------------------------------------------------


class RecordingBrain:
    """Delegates to another brain, keeping each request's text and its toolbox (to see gates)."""

    def __init__(self, inner: Brain) -> None:
        self.inner = inner
        self.name = inner.name
        self.texts: list[str] = []
        self.boxes: list[ToolBox] = []

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        self.texts.append(request.text)
        self.boxes.append(tools)
        async for event in self.inner.respond(request, tools):
            yield event

    def held(self) -> str | None:
        """The effectful tool the latest draft is parked at, if any."""
        box = self.boxes[-1] if self.boxes else None
        return box.held if isinstance(box, GatedToolBox) else None


BOOKING_TURNS = (
    f"Hi, what's open on {spoken_day(EVENT_DAY)}?",
    "6pm please, for 15 adults and 2 kids",
    "Jane Roe",
)


def more_than(items: list[str], count: int) -> Callable[[], bool]:
    return lambda: len(items) > count


async def up_to_the_booking_question(voice: Voice, sim: SimulatedCall) -> ScriptedStream:
    """Greeting, then the caller's answers until the agent asks to confirm the booking."""
    await sim.wait_for_agent_silence(quiet_for=0.1)
    stream = await voice.stream()
    for text in BOOKING_TURNS:
        before = len(voice.tts.texts)
        stream.says(text)
        await eventually(more_than(voice.tts.texts, before))
        await sim.wait_for_agent_silence(quiet_for=0.15, require_audio=False)
    return stream


async def parked_at(brain: RecordingBrain, stream: ScriptedStream, interim: str, tool: str) -> None:
    """Wait for a draft to park at `tool`, repeating the interim as a live STT does while the
    caller speaks (one that came while the agent's last words were still playing was taken
    for a backchannel)."""
    for _ in range(10):
        with contextlib.suppress(TimeoutError):
            await eventually(lambda: brain.held() == tool, within=0.5)
            return
        stream.interim(interim, seconds=0.3)
    raise AssertionError(f"no draft parked at {tool}")


async def bookings(db: Sessions) -> list[Booking]:
    async with db() as session:
        return list(await session.scalars(select(Booking)))


async def test_stable_interim_is_answered_early_and_its_effects_wait_for_the_final(
    voice: Voice, db: Sessions
) -> None:
    brain = RecordingBrain(DeterministicBrain())
    voice.install_brain(brain)
    async with voice.call() as sim:
        stream = await up_to_the_booking_question(voice, sim)
        stream.speech_started()
        stream.interim("yes", seconds=0.3)
        # The draft thinks ahead up to the booking, and parks there: nothing is written yet.
        await parked_at(brain, stream, "yes", "create_booking")
        assert await bookings(db) == []
        assert [m.text for m in await messages(db) if m.role is Role.customer] == list(BOOKING_TURNS)
        spoken = len(voice.tts.texts)
        stream.final("Yes.", seconds=0.3)
        await until(lambda: _has_reply_to(db, "Yes."))
        await eventually(lambda: len(voice.tts.texts) > spoken)
        await sim.wait_for_agent_silence(quiet_for=0.15, require_audio=False)
    [booking] = await bookings(db)
    assert booking.adults == 15
    assert brain.texts.count("yes") == 1  # the draft was adopted, not run again
    reply = (await agent_messages(db))[-1]
    assert "preempted" in reply.marks
    assert booking.code in reply.text


async def _has_reply_to(db: Sessions, text: str) -> bool:
    said = await messages(db)
    asked = [m.id for m in said if m.role is Role.customer and m.text == text]
    return bool(asked) and any(m.reply_to_id == asked[-1] for m in said)


async def test_a_caller_who_goes_on_gets_one_answer_and_no_effects_from_the_draft(
    voice: Voice, db: Sessions, fake_twilio: FakeTwilio
) -> None:
    brain = RecordingBrain(DeterministicBrain())
    voice.install_brain(brain)
    full = "yes but make it 20 adults"
    async with voice.call() as sim:
        stream = await up_to_the_booking_question(voice, sim)
        stream.speech_started()
        stream.interim("yes", seconds=0.3)
        await parked_at(brain, stream, "yes", "create_booking")
        draft_box = brain.boxes[-1]
        stream.interim("yes but make it", seconds=0.9)
        stream.final(full, seconds=1.4)
        await until(lambda: _has_reply_to(db, full))
        await sim.wait_for_agent_silence(quiet_for=0.15, require_audio=False)
    # The discarded draft never ran its tool; the full utterance got exactly one answer.
    assert draft_box.calls == []
    assert brain.texts[-2:] == ["yes", full]
    assert all(b.adults != 15 for b in await bookings(db))
    said = await messages(db)
    customers = [m for m in said if m.role is Role.customer]
    assert [m.text for m in customers] == [*BOOKING_TURNS, full]
    assert len([m for m in said if m.reply_to_id == customers[-1].id]) == 1
    assert "preempted" not in said[-1].marks


async def test_words_that_stop_mid_sentence_start_no_draft(voice: Voice, db: Sessions) -> None:
    brain = RecordingBrain(DeterministicBrain())
    voice.install_brain(brain)
    question = f"what's open on {spoken_day(EVENT_DAY)}"
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        stream.speech_started()
        stream.interim("what's open on", seconds=0.5)
        await asyncio.sleep(0.5)  # five times the wait for stable words
        assert brain.texts == []  # "on" what? No draft spends tokens on it
        stream.interim(question, seconds=0.9)
        await eventually(lambda: brain.texts == [question])
        stream.final(question.capitalize() + "?", seconds=0.9)
        await until(lambda: _has_reply_to(db, question.capitalize() + "?"))
        await sim.wait_for_agent_silence(quiet_for=0.15, require_audio=False)
    assert brain.texts == [question]  # one draft, adopted
    assert "preempted" in (await agent_messages(db))[-1].marks


async def test_a_drafts_first_sentence_is_synthesised_before_the_caller_finishes(
    voice: Voice, db: Sessions
) -> None:
    question = f"what's open on {spoken_day(EVENT_DAY)}"
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        spoken, heard = len(voice.tts.texts), len(sim.agent_chunks)
        stream.speech_started()
        stream.interim(question, seconds=0.6)
        # Stable words: the draft answers, and its first sentence goes to the TTS unplayed.
        await eventually(more_than(voice.tts.texts, spoken))
        ahead = voice.tts.texts[spoken]
        await asyncio.sleep(0.1)
        assert len(sim.agent_chunks) == heard  # nothing played before the final
        stream.final(question.capitalize() + "?", seconds=0.6)
        await until(lambda: _has_reply_to(db, question.capitalize() + "?"))
        await sim.wait_for_agent_silence(quiet_for=0.15, require_audio=False)
        call_sid = sim.call_sid
    await until(lambda: _ended(db, call_sid))
    reply = (await agent_messages(db))[-1]
    assert "preempted" in reply.marks
    assert reply.text.startswith(ahead)
    assert voice.tts.texts.count(ahead) == 1  # played from what was synthesised ahead
    assert len(sim.agent_chunks) > heard
    lines = await costs(db)
    assert lines[CostKind.tts].quantity == sum(len(t) for t in voice.tts.texts)


async def test_a_draft_made_while_the_caller_talks_goes_to_the_tts_once_they_stop(
    voice: Voice, db: Sessions
) -> None:
    brain = RecordingBrain(DeterministicBrain())
    voice.install_brain(brain)
    question = f"what's open on {spoken_day(EVENT_DAY)}"
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        spoken = len(voice.tts.texts)
        _, talking = sim.queue_speech(tone_ulaw(300, 1500))  # the caller's voice, still going
        stream.speech_started()
        stream.interim(question, seconds=0.6)
        await eventually(lambda: brain.texts == [question])  # stable words: a draft
        await asyncio.sleep(0.4)
        assert not talking.is_set()
        assert len(voice.tts.texts) == spoken  # its first sentence waits: they may go on
        await talking.wait()
        await eventually(more_than(voice.tts.texts, spoken))  # quiet now: synthesised ahead
        ahead = voice.tts.texts[spoken]
        stream.final(question.capitalize() + "?", seconds=1.5)
        await until(lambda: _has_reply_to(db, question.capitalize() + "?"))
        await sim.wait_for_agent_silence(quiet_for=0.15, require_audio=False)
        call_sid = sim.call_sid
    await until(lambda: _ended(db, call_sid))
    reply = (await agent_messages(db))[-1]
    # Ready within ~0.2 s of the interim, sent to the TTS only after the 1.5 s of voice.
    assert reply.marks["speech_ahead"] - reply.marks["draft_sentence"] >= 500
    assert reply.text.startswith(ahead)
    assert voice.tts.texts.count(ahead) == 1  # played from what was synthesised ahead


async def test_a_draft_overtaken_while_the_caller_talks_never_reaches_the_tts(
    voice: Voice, db: Sessions
) -> None:
    brain = RecordingBrain(DeterministicBrain())
    voice.install_brain(brain)
    first = f"what's open on {spoken_day(EVENT_DAY)}"
    full = f"{first}, no wait, first tell me how much the lobster upgrade is"
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        spoken = len(voice.tts.texts)
        _, talking = sim.queue_speech(tone_ulaw(300, 1500))
        stream.speech_started()
        stream.interim(first, seconds=0.6)
        await eventually(lambda: brain.texts == [first])
        await asyncio.sleep(0.3)
        stream.interim(f"{first}, no wait", seconds=1.0)  # the caller goes on: discarded
        await talking.wait()
        stream.final(full, seconds=1.5)
        await until(lambda: _has_reply_to(db, full))
        await sim.wait_for_agent_silence(quiet_for=0.15, require_audio=False)
        call_sid = sim.call_sid
    await until(lambda: _ended(db, call_sid))
    said = " ".join(m.text for m in await agent_messages(db))
    assert brain.texts[0] == first
    synthesised = voice.tts.texts[spoken:]
    assert synthesised  # the reply to the whole question
    assert all(text in said for text in synthesised)  # nothing synthesised for the draft
    lines = await costs(db)
    assert lines[CostKind.tts].quantity == sum(len(t) for t in voice.tts.texts)


async def test_speech_synthesised_for_a_discarded_draft_is_never_played_but_is_billed(
    voice: Voice, db: Sessions
) -> None:
    first = f"what's open on {spoken_day(EVENT_DAY)}"
    full = f"{first}, no wait, first tell me how much the lobster upgrade is"
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        spoken = len(voice.tts.texts)
        stream.speech_started()
        stream.interim(first, seconds=0.6)
        await eventually(more_than(voice.tts.texts, spoken))
        ahead = voice.tts.texts[spoken]
        stream.interim(f"{first}, no wait", seconds=1.0)  # the caller goes on
        stream.final(full, seconds=1.6)
        await until(lambda: _has_reply_to(db, full))
        await sim.wait_for_agent_silence(quiet_for=0.15, require_audio=False)
        call_sid = sim.call_sid
    await until(lambda: _ended(db, call_sid))
    reply = (await agent_messages(db))[-1]
    assert "preempted" not in reply.marks
    assert ahead not in " ".join(m.text for m in await agent_messages(db))  # never said
    lines = await costs(db)
    assert lines[CostKind.tts].quantity == sum(len(t) for t in voice.tts.texts)  # ahead included


async def _answer_latency(voice: Voice, db: Sessions, *, preempt: bool) -> tuple[float, Message]:
    voice.configure(preempt=preempt)
    question = f"Hi, what's open on {spoken_day(EVENT_DAY)}?"
    with FakeDeepgram(
        stt_final_delay=0.2, interim_every=0.25, chars_per_second=60, tts_first_byte_delay=0.01
    ) as deepgram:
        deepgram.script_transcripts(question)
        voice.ctx.extras["stt"] = DeepgramSTT(api_key=DEEPGRAM_KEY, base_url=deepgram.base_url)
        voice.ctx.extras["tts"] = DeepgramTTS(api_key=DEEPGRAM_KEY, base_url=deepgram.base_url)
        async with voice.call() as sim:
            await sim.wait_for_agent_silence(quiet_for=0.2)
            turn = await sim.say(tone_ulaw(300, 800))
            await sim.wait_for_agent_silence(quiet_for=0.2)
        await until(lambda: _ended(db, sim.call_sid))
    assert turn.latency is not None
    reply = (await agent_messages(db))[-1]
    assert "6 pm" in reply.text, [m.text for m in await messages(db)]
    return turn.latency, reply


async def test_preemption_gets_audio_to_the_caller_sooner(voice: Voice, db: Sessions) -> None:
    voice.install_brain(SlowBrain(DeterministicBrain(), delay=0.4))  # an LLM's think time
    without, plain = await _answer_latency(voice, db, preempt=False)
    with_preemption, early = await _answer_latency(voice, db, preempt=True)
    assert "preempted" not in plain.marks
    assert "preempted" in early.marks
    # The draft ran during the endpointing wait (300 ms) and the final's delay (200 ms).
    assert with_preemption <= without - 0.15, (with_preemption, without)


# ---- failures and edges over real sockets ------------------------------------------------------


@pytest.mark.parametrize(("utterance_end_ms", "window"), [(1000, 1.5), (1600, 2.1)])
async def test_caller_audio_goes_to_deepgram_frame_by_frame_only_while_an_endpoint_is_timed(
    voice: Voice, db: Sessions, utterance_end_ms: int, window: float
) -> None:
    """A quiet line goes 200 ms a message and speech 60 ms, its first frame at once; quiet
    frames while Deepgram times an utterance end (plus half a second) after speech go one
    by one."""
    with FakeDeepgram(tts_first_byte_delay=0.01, chars_per_second=40) as deepgram:
        voice.ctx.extras["stt"] = DeepgramSTT(
            api_key=DEEPGRAM_KEY, base_url=deepgram.base_url, utterance_end_ms=utterance_end_ms
        )
        voice.ctx.extras["tts"] = DeepgramTTS(api_key=DEEPGRAM_KEY, base_url=deepgram.base_url)
        async with voice.call() as sim:
            await sim.wait_for_agent_silence(quiet_for=0.3)
            await sim.pause(0.3)  # a quiet line, the greeting over
            _, spoken = sim.queue_speech(tone_ulaw(300, 400))  # nothing scripted: no words, no turn
            await spoken.wait()
            await sim.pause(window + 0.7)
            sent = sim.frames_sent
        await until(lambda: _ended(db, sim.call_sid))
    [listen] = deepgram.listen_connections
    sizes = listen.audio_messages
    first_tone = sizes.index(3 * 160)
    assert len(sizes[: first_tone - 1]) >= 10, sizes
    assert set(sizes[: first_tone - 1]) == {10 * 160}, sizes  # the greeting and the quiet line
    assert sizes[first_tone - 1] <= 10 * 160, sizes  # the tone's first frame, with the quiet before it
    runs = [(size, len(list(group))) for size, group in itertools.groupby(sizes[first_tone:])]
    assert runs[0][1] >= 5, runs  # the rest of the tone
    singles = [count for size, count in runs if size == 160]
    assert len(singles) == 1, runs  # one stretch frame by frame: the quiet after the tone
    assert window * 50 - 2 <= singles[0] <= window * 50 + 1, runs  # the first may carry held ones
    after = runs[runs.index((160, singles[0])) + 1]
    assert after[0] == 10 * 160, runs  # a quiet line again
    assert after[1] >= 2, runs
    odd = [size for size, _ in runs if size not in (160, 480, 1600)]
    assert len(odd) <= 2, runs  # frames held when the tone ended, and when the call did
    assert listen.audio_bytes == sent * 160  # nothing held back is lost


async def test_stt_socket_dropped_while_the_caller_speaks_loses_no_words(voice: Voice, db: Sessions) -> None:
    question = f"Hi, what's open on {spoken_day(EVENT_DAY)}?"
    with FakeDeepgram(stt_final_delay=0.05, tts_first_byte_delay=0.01, chars_per_second=60) as deepgram:
        deepgram.script_transcripts(question)
        voice.ctx.extras["stt"] = DeepgramSTT(api_key=DEEPGRAM_KEY, base_url=deepgram.base_url)
        voice.ctx.extras["tts"] = DeepgramTTS(api_key=DEEPGRAM_KEY, base_url=deepgram.base_url)
        async with voice.call() as sim:
            await sim.wait_for_agent_silence(quiet_for=0.2)
            _, spoken = sim.queue_speech(tone_ulaw(300, 900))
            first = deepgram.listen_connections[0]
            heard_before = first.audio_bytes
            await eventually(lambda: first.audio_bytes >= heard_before + 3200)  # 0.4 s into the words
            assert deepgram.drop_listen_connections() == 1
            await spoken.wait()
            await sim.wait_for_agent_silence(quiet_for=0.3)
        assert len(deepgram.listen_connections) >= 2
        assert first.dropped
        await until(lambda: _ended(db, sim.call_sid))
    said = await messages(db)
    assert [m.text for m in said if m.role is Role.customer] == [question]
    assert "6 pm" in said[-1].text


async def test_stalled_llms_get_a_filler_then_the_deterministic_answer(
    voice: Voice, db: Sessions, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    llm_settings = settings.model_copy(
        update={
            "openai_api_key": OPENAI_KEY,
            "openai_base_url": fake_openai.base_url,
            "hibachi_llm_first_token_timeout": 0.3,
        }
    )
    voice.install_brain(build_brain(llm_settings, DeterministicBrain()))
    voice.configure(filler_after=0.2)
    fake_openai.script(Stall(seconds=2), Stall(seconds=2))
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        stream = await voice.stream()
        stream.says(f"What's open on {spoken_day(EVENT_DAY)}?")
        await eventually(lambda: any("6 pm" in t for t in voice.tts.texts))
        await sim.wait_for_agent_silence(quiet_for=0.2, require_audio=False)
    assert len(fake_openai.chat_requests) == 2  # the primary and the fallback model both stalled
    filler_at = voice.tts.texts.index(FILLER)
    answer_at = next(i for i, t in enumerate(voice.tts.texts) if "6 pm" in t)
    assert filler_at < answer_at
    reply = (await agent_messages(db))[-1]
    assert reply.brain == "fallback"
    assert "6 pm" in reply.text
    assert reply.marks["filler"] < reply.marks["first_token"]


async def test_hanging_up_mid_reply_through_deepgram_keeps_transcript_and_cost(
    voice: Voice, db: Sessions
) -> None:
    question = f"Hi, what's open on {spoken_day(EVENT_DAY)}?"
    with FakeDeepgram(stt_final_delay=0.05, tts_first_byte_delay=0.01, chars_per_second=40) as deepgram:
        deepgram.script_transcripts(question)
        voice.ctx.extras["stt"] = DeepgramSTT(api_key=DEEPGRAM_KEY, base_url=deepgram.base_url)
        voice.ctx.extras["tts"] = DeepgramTTS(api_key=DEEPGRAM_KEY, base_url=deepgram.base_url)
        async with voice.call() as sim:
            await sim.wait_for_agent_silence(quiet_for=0.2)
            turn = await sim.say(tone_ulaw(300, 900))
            await eventually(lambda: turn.first_agent_audio_at is not None, within=5)
            await sim.pause(0.4)
        await until(lambda: _ended(db, sim.call_sid))  # while Deepgram is up: the STT closes cleanly
        [listen] = deepgram.listen_connections
    # Every frame reached the STT, those held back while the reply played included.
    assert listen.audio_bytes == sim.frames_sent * 160
    said = await messages(db)
    assert [m.role for m in said] == [Role.agent, Role.customer, Role.agent]
    assert said[1].text == question
    reply = said[-1]
    assert reply.truncated
    assert len(reply.text) < len(reply.marks["generated"])
    lines = await costs(db)
    assert lines[CostKind.stt].item == "deepgram"
    assert lines[CostKind.stt].quantity > 0
    assert lines[CostKind.tts].item == "deepgram"
    assert lines[CostKind.voice].quantity > 0


async def test_a_failed_transfer_apologises_and_gives_the_staff_number(
    voice: Voice, db: Sessions, fake_twilio: FakeTwilio
) -> None:
    async with voice.call() as sim:
        await sim.wait_for_agent_silence(quiet_for=0.1)
        fake_twilio.end_call(sim.call_sid)  # Twilio will refuse to update this call
        await sim.press("0")
        sorry = TRANSFER_FAILED.format(staff=STAFF_LINE)
        await eventually(lambda: any(STAFF_LINE in text for text in voice.tts.texts))
        await sim.wait_for_agent_silence(quiet_for=0.15, require_audio=False)
        assert not sim.closed  # the call goes on with the agent
    said = [m.text for m in await agent_messages(db)]
    assert any("passing you to our team" in text for text in said)
    assert said[-1] == sorry
    assert [u for u in fake_twilio.call_updates if u["call_sid"] == sim.call_sid] == []


async def test_stream_handshake_without_twilio_signature_is_refused(
    voice: Voice, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    socket = voice.url.replace("http", "ws") + "/twilio/media"
    forged = {SIGNATURE_HEADER: sign(stream_url(settings), {}, "not-the-auth-token")}
    for headers in ({}, forged):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(socket, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 403
    assert voice.stt.streams == []
    assert "X-Twilio-Signature" in caplog.text


class FinalsOnlySTT(ScriptedSTT):
    """An STT like LocalSTT: speech starts and whole-utterance finals, no interim results."""

    name = "finals-only"
    capabilities = STTCapabilities(interim_results=False, endpointing=True, vad_events=True)


async def test_without_interim_results_a_final_over_the_agent_barges_in(voice: Voice, db: Sessions) -> None:
    stt = FinalsOnlySTT()
    voice.ctx.extras["stt"] = stt
    voice.tts.frames_per_word = 8  # the greeting takes seconds
    async with voice.call() as sim:
        await eventually(lambda: len(stt.streams) == 1)
        stream = stt.streams[0]
        await eventually(lambda: len(sim.agent_chunks) > 5)
        stream.speech_started()
        stream.final("uh huh", seconds=0.6)
        stream.final("okay sure", seconds=0.6)
        await sim.pause(0.2)
        assert sim.clears == []  # backchannels never interrupt
        stream.speech_started()
        stream.final(f"what's open on {spoken_day(EVENT_DAY)}", seconds=1.2)
        await eventually(lambda: bool(sim.clears))
        await eventually(lambda: any("6 pm" in t for t in voice.tts.texts))
    greeting = (await agent_messages(db))[0]
    assert greeting.truncated
