"""The `voice-audio` eval driver: whole phone calls through the full audio loop on the local engines.

The app runs under uvicorn in the test's own event loop with the real engine (deterministic
brain, all tools, real database, a fixed clock in staff hours) and the embedded speech
engines (webrtcvad + Whisper tiny.en, Piper). The driver speaks the caller's lines with
Piper over the Twilio Media Streams protocol and reads the agent's replies back from the
transcript. Local engines are slow on small machines, so the calls are few and short.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from agent.brain import Role
from agent.brains.deterministic import DeterministicBrain
from agent.engine import ConversationEngine
from agent.models import Conversation, Transfer, TransferOutcome, TransferReason
from agent.speech.instrumented import InstrumentedSTT, InstrumentedTTS
from agent.speech.local import LocalSTT, LocalTTS
from agent.tools.registry import ALL_TOOLS
from agent.voice.session import VoiceConfig
from evals.drivers.base import Driver
from evals.drivers.voice_audio import VoiceAudioDriver
from evals.environment import EvalEnvironment, ProviderFakes
from evals.runner import Runner
from evals.scenario import STAFF_PHONES, load_suite
from hibachi.app import create_app
from hibachi.context import AppContext
from hibachi.settings import Settings
from telephony.fakes import FakeRingCentral, FakeTwilio

TZ = ZoneInfo("America/Los_Angeles")
BAY_AREA_LINE = "+14085550199"
STAFF_LINE = STAFF_PHONES[BAY_AREA_LINE]
NOW = datetime.combine(datetime.now(TZ).date(), time(11, 0), TZ)  # staff hours: transfers connect


@pytest.fixture
def local_engines(app_ctx: AppContext) -> Iterator[None]:
    """The real engine on a fixed clock and the embedded speech engines; restored afterwards."""
    keys = ("engine", "stt", "tts", "voice_config")
    saved = {key: app_ctx.extras.get(key) for key in keys}
    app_ctx.extras["engine"] = ConversationEngine(
        app_ctx, brain=DeterministicBrain(), tools=ALL_TOOLS, clock=lambda: NOW
    )
    app_ctx.extras["stt"] = InstrumentedSTT(LocalSTT(), open_timeout=30.0, attempts=1)
    app_ctx.extras["tts"] = InstrumentedTTS(LocalTTS(), first_byte_timeout=30.0, attempts=1)
    # A loaded 2-core machine can be slow between turns: never let "are you still there?" in.
    app_ctx.extras["voice_config"] = VoiceConfig(silence_timeout=30.0)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                app_ctx.extras.pop(key, None)
            else:
                app_ctx.extras[key] = value


@pytest.fixture
def env(
    settings: Settings,
    app_ctx: AppContext,
    fake_twilio: FakeTwilio,
    fake_ringcentral: FakeRingCentral,
    local_engines: None,
) -> EvalEnvironment:
    app = create_app(settings, context=app_ctx)
    app.state.ctx = app_ctx
    return EvalEnvironment(app_ctx, app, ProviderFakes(fake_twilio, fake_ringcentral))


async def test_dtmf_zero_on_a_call_transfers_and_the_records_are_complete(env: EvalEnvironment) -> None:
    driver = VoiceAudioDriver(env=env, caller_phone="+14085550162", agent_phone=BAY_AREA_LINE)
    as_driver: Driver = driver  # what the runner sees
    greeting = await as_driver.open()
    try:
        # Read back from the transcript: exactly what the agent said.
        assert greeting.texts == [
            "Good morning, thanks for calling My Hibachi in the Bay Area. How can I help you today?"
        ]
        assert not greeting.ended
        transferred = await as_driver.press("0")
        assert transferred.texts == [
            "I'm passing you to our team now; they have a summary of our conversation."
        ]
        assert transferred.ended  # the server dialled staff and dropped the stream
        assert transferred.latency_s is not None
        assert 0 < transferred.latency_s < 30
        assert (await as_driver.send("Hello?")).ended  # nobody is listening any more
    finally:
        await as_driver.close()

    async with env.ctx.sessions() as session:
        [transfer] = await session.scalars(select(Transfer))
        conversation = await session.scalar(
            select(Conversation).where(Conversation.external_id == driver.call_sid)
        )
    assert (transfer.reason, transfer.outcome) == (TransferReason.dtmf, TransferOutcome.connected)
    assert conversation is not None
    assert conversation.ended_at is not None  # the call's records were closed before close() returned
    assert [line.role for line in driver.heard] == [Role.agent, Role.agent]
    # close() delivered the staff summary the transfer queued.
    assert [text.to_phone for text in env.fakes.texts()] == [STAFF_LINE]
    assert 0 < driver.duration_s < 60


async def test_voice_suite_passes_through_the_runner(env: EvalEnvironment) -> None:
    """The shipped `voice` suite, scored by the runner like any other (booking, FAQ, DTMF 0)."""
    suite = load_suite("voice")
    run = await Runner(env, brain="deterministic", k=1).run([suite])

    failed = {t.scenario: t.failures or t.error for t in run.trials if not t.passed}
    assert not failed, failed
    assert [t.scenario for t in run.trials] == [s.name for s in suite.scenarios]
    assert all(t.channel == "voice-audio" for t in run.trials)
    booking, faq, dtmf = run.trials
    # The caller's words as the server's STT understood them reached the brain: a booking in one go.
    said = [t.text for t in booking.turns]
    assert said[0].startswith("Good morning")
    assert "Shall I book it?" in said[2]
    assert "booking code is" in said[4]
    # Every spoken answer was timed on the phone: caller's end of speech -> first agent audio.
    answers = [t for trial in (booking, faq) for t in trial.turns[1:] if t.role == "agent"]
    assert len(answers) == 3
    assert all(t.latency_s is not None and 0 < t.latency_s < 30 for t in answers)
    assert dtmf.transfer_reasons == ["dtmf"]
    assert all(t.duration_s > 0 for t in run.trials)
    assert run.summary().overall.pass_k == 1.0
