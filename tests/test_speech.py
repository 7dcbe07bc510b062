"""Speech providers: Deepgram (real SDK against FakeDeepgram) and the embedded local engines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from deepgram.core.api_error import ApiError

from agent.speech.base import SpeechStarted, STTEvent, STTStream, Transcript, UtteranceEnd
from agent.speech.deepgram import DeepgramStream, DeepgramSTT, DeepgramTTS, SpeechProviderError
from agent.speech.factory import build_stt, build_tts
from agent.speech.instrumented import InstrumentedTTS
from agent.speech.local import LocalSTT, LocalTTS
from hibachi.settings import Settings
from telephony.fakes.deepgram_server import DEFAULT_API_KEY, FakeDeepgram
from tests.test_deepgram_fake import silence, tone
from tests.test_voice_session import eventually

BOOKING_SENTENCE = "Your booking is confirmed for Saturday at 6 pm."


@pytest.fixture(scope="module")
def fake_deepgram() -> Iterator[FakeDeepgram]:
    with FakeDeepgram(stt_final_delay=0.0, tts_first_byte_delay=0.0) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh_fake(request: pytest.FixtureRequest) -> None:
    if "fake_deepgram" in request.fixturenames:
        fake: FakeDeepgram = request.getfixturevalue("fake_deepgram")
        fake.reset()
        fake.stt_final_delay = fake.tts_first_byte_delay = 0.0
        fake.idle_timeout = 10.0


def deepgram_stt(fake: FakeDeepgram, **options: float) -> DeepgramSTT:
    return DeepgramSTT(api_key=DEFAULT_API_KEY, base_url=fake.base_url, **options)  # type: ignore[arg-type]  # only float knobs


class Collector:
    """Gathers a stream's events in the background."""

    def __init__(self, stream: STTStream) -> None:
        self.events: list[STTEvent] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._collect(stream.events()))

    async def _collect(self, events: AsyncIterator[STTEvent]) -> None:
        async for event in events:
            self.events.append(event)
            self._changed.set()

    async def wait_until(self, check: Callable[[list[STTEvent]], bool]) -> None:
        async with asyncio.timeout(20):
            while not check(self.events):
                self._changed.clear()
                await self._changed.wait()

    async def done(self) -> list[STTEvent]:
        await asyncio.wait_for(self._task, 5.0)
        return self.events


def has_final(events: list[STTEvent]) -> bool:
    return any(isinstance(e, Transcript) and e.is_final for e in events)


def speech_starts(count: int) -> Callable[[list[STTEvent]], bool]:
    return lambda events: sum(isinstance(e, SpeechStarted) for e in events) >= count


async def send_frames(stream: STTStream, audio: bytes, *, pause_every: int = 0) -> None:
    for index, start in enumerate(range(0, len(audio), 160)):
        await stream.send(audio[start : start + 160])
        if pause_every and index % pause_every == 0:
            await asyncio.sleep(0.001)


# -- Deepgram ------------------------------------------------------------------------


async def test_deepgram_stt_maps_sdk_messages_to_events(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.script_transcripts("Can I book for Saturday?")
    stream = await deepgram_stt(fake_deepgram).open()
    collector = Collector(stream)
    await send_frames(stream, silence(0.4) + tone(1.2) + silence(1.4))
    billed = await stream.close()
    events = await collector.done()

    assert events[0] == SpeechStarted(at=pytest.approx(0.4, abs=0.03))  # type: ignore[arg-type]
    finals = [e for e in events if isinstance(e, Transcript) and e.is_final]
    assert [f.text for f in finals] == ["Can I book for Saturday?"]
    assert finals[0].speech_final
    assert finals[0].start == pytest.approx(0.4, abs=0.03)
    assert finals[0].end == pytest.approx(1.6, abs=0.03)
    assert any(isinstance(e, Transcript) and not e.is_final for e in events)
    assert events[-1] == UtteranceEnd(last_word_end=pytest.approx(1.6, abs=0.03))  # type: ignore[arg-type]
    assert billed == pytest.approx(3.0)
    record = fake_deepgram.listen_connections[0]
    assert record.param("model") == "nova-3"
    assert record.param("endpointing") == "300"
    assert record.param("utterance_end_ms") == "1000"
    assert record.controls == ["CloseStream"]
    assert "sec-websocket-extensions" not in record.headers  # audio frames are not deflated


async def test_deepgram_refusing_the_key_fails_stt_and_tts_with_the_status(
    fake_deepgram: FakeDeepgram,
) -> None:
    with pytest.raises(SpeechProviderError, match="401"):
        await DeepgramSTT(api_key="not-the-key", base_url=fake_deepgram.base_url).open()
    assert [c.close_code for c in fake_deepgram.listen_connections] == [401]  # refused for good: no retry
    tts = DeepgramTTS(api_key="not-the-key", base_url=fake_deepgram.base_url)
    with pytest.raises(ApiError) as refused:
        async for _ in tts.synthesize("Hello."):
            pass
    assert refused.value.status_code == 401
    await tts.aclose()


async def test_deepgram_stt_reconnects_after_a_drop_without_losing_the_callers_words(
    fake_deepgram: FakeDeepgram,
) -> None:
    fake_deepgram.script_transcripts("Yes that works", "I'd like to book a hibachi party for Saturday")
    stream = await deepgram_stt(fake_deepgram).open()
    assert isinstance(stream, DeepgramStream)
    collector = Collector(stream)
    await send_frames(stream, tone(0.6) + silence(0.5))  # first utterance, finalized
    await collector.wait_until(has_final)
    await send_frames(stream, silence(0.5) + tone(0.8))  # second utterance, half said
    await collector.wait_until(speech_starts(2))
    assert fake_deepgram.drop_listen_connections() == 1
    await send_frames(stream, tone(0.8) + silence(1.5), pause_every=10)  # the rest, across the drop
    billed = await stream.close()
    events = await collector.done()

    finals = [e for e in events if isinstance(e, Transcript) and e.is_final]
    assert [f.text for f in finals] == ["Yes that works", "I'd like to book a hibachi party for Saturday"]
    # Timestamps stay on the call's timeline: the second utterance began at 1.6 s.
    assert finals[1].start == pytest.approx(1.6, abs=0.05)
    assert finals[1].end == pytest.approx(3.2, abs=0.05)
    starts = [e.at for e in events if isinstance(e, SpeechStarted)]
    assert starts == [pytest.approx(0.0, abs=0.03), pytest.approx(1.6, abs=0.05)]  # no repeat
    assert stream.reconnects == 1
    first, second = fake_deepgram.listen_connections
    assert first.dropped
    assert first.close_code == 1011
    # Only the audio after the first final's end was sent again.
    assert second.audio_seconds == pytest.approx(4.7 - 0.9, abs=0.05)
    # Billing counts both sockets (audio in flight when the first dropped may count too).
    received = first.audio_seconds + second.audio_seconds
    assert received - 0.01 <= billed <= received + 0.3


async def test_deepgram_stt_keeps_an_idle_stream_alive(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.idle_timeout = 0.6
    stream = await deepgram_stt(fake_deepgram, keepalive_interval=0.2).open()
    await send_frames(stream, silence(0.2))
    await asyncio.sleep(1.5)  # no audio for longer than the server's idle timeout
    await send_frames(stream, silence(0.2))
    billed = await stream.close()
    assert len(fake_deepgram.listen_connections) == 1
    record = fake_deepgram.listen_connections[0]
    assert record.controls.count("KeepAlive") >= 4
    assert record.close_code == 1000
    assert billed == pytest.approx(0.4)


async def test_deepgram_stt_finalize_returns_the_words_so_far(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.script_transcripts("eight adults")
    stream = await deepgram_stt(fake_deepgram).open()
    collector = Collector(stream)
    await send_frames(stream, tone(0.7))
    await stream.finalize()
    await collector.wait_until(has_final)
    await stream.close()
    final = next(e for e in collector.events if isinstance(e, Transcript) and e.is_final)
    assert (final.text, final.speech_final) == ("eight adults", False)


async def test_deepgram_tts_streams_raw_mulaw_after_the_first_byte_delay(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.tts_first_byte_delay = 0.25
    tts = DeepgramTTS(api_key=DEFAULT_API_KEY, base_url=fake_deepgram.base_url)
    started = time.monotonic()
    chunks = []
    first_at = 0.0
    async for chunk in tts.synthesize(BOOKING_SENTENCE):
        first_at = first_at or time.monotonic() - started
        chunks.append(chunk)
    audio = b"".join(chunks)
    assert 0.23 <= first_at < 1.0
    assert len(chunks) > 1  # streamed, not one blob
    assert not audio.startswith(b"RIFF")
    assert len(audio) / 8000 == pytest.approx(len(BOOKING_SENTENCE) / 12, rel=0.15)
    [request] = fake_deepgram.speak_requests
    assert request.method == "WS"  # a `/v1/speak` socket, not a REST request per sentence
    assert request.json == {"text": BOOKING_SENTENCE}
    assert (request.form["encoding"], request.form["sample_rate"]) == (["mulaw"], ["8000"])
    assert "sec-websocket-extensions" not in request.headers  # nor is the audio that comes back
    await tts.aclose()


async def test_deepgram_tts_reuses_its_sockets_across_sentences(fake_deepgram: FakeDeepgram) -> None:
    tts = DeepgramTTS(api_key=DEFAULT_API_KEY, base_url=fake_deepgram.base_url)
    sentences = ["Hello there.", "Party of twelve?", "Saturday at six works."]
    lengths = [len(b"".join([c async for c in tts.synthesize(s)])) for s in sentences]
    assert [n / 8000 for n in lengths] == pytest.approx([len(s) / 12 for s in sentences], rel=0.15)
    assert list(fake_deepgram.speak_sockets_flushed.values()) == [3]  # one socket, three sentences
    await tts.aclose()


async def test_deepgram_tts_clears_an_abandoned_socket_and_reuses_it_without_its_stale_audio(
    fake_deepgram: FakeDeepgram,
) -> None:
    tts = DeepgramTTS(api_key=DEFAULT_API_KEY, base_url=fake_deepgram.base_url)
    chunks = tts.synthesize(BOOKING_SENTENCE * 4)
    await anext(chunks)  # the caller barged in after the first chunk
    await chunks.aclose()
    await eventually(lambda: tts.idle_sockets == 1)  # `Cleared`: back in the pool
    audio = b"".join([c async for c in tts.synthesize("Sure.")])
    assert len(audio) / 8000 == pytest.approx(len("Sure.") / 12, rel=0.2)  # only its own audio
    assert list(fake_deepgram.speak_sockets_flushed.values()) == [2]  # on the same socket
    assert fake_deepgram.speak_sockets_open() == 1
    await tts.aclose()


async def test_deepgram_tts_closes_an_abandoned_socket_it_cannot_clear(fake_deepgram: FakeDeepgram) -> None:
    tts = DeepgramTTS(api_key=DEFAULT_API_KEY, base_url=fake_deepgram.base_url)
    chunks = tts.synthesize(BOOKING_SENTENCE)
    await anext(chunks)
    assert fake_deepgram.drop_speak_sockets() == 1  # gone before the `Clear` can be answered
    await chunks.aclose()
    await eventually(lambda: fake_deepgram.speak_sockets_open() == 0)
    audio = b"".join([c async for c in tts.synthesize("Sure.")])
    assert len(audio) / 8000 == pytest.approx(len("Sure.") / 12, rel=0.2)
    assert list(fake_deepgram.speak_sockets_flushed.values()) == [1, 1]  # a new socket for it
    assert tts.idle_sockets == 1
    await tts.aclose()


async def test_deepgram_tts_sentence_waits_for_the_socket_being_opened_for_it(
    fake_deepgram: FakeDeepgram,
) -> None:
    tts = DeepgramTTS(api_key=DEFAULT_API_KEY, base_url=fake_deepgram.base_url)
    tts.prepare()  # the sentence comes before that socket's handshake has finished
    audio = b"".join([c async for c in tts.synthesize("Hello there.")])
    assert len(audio) / 8000 == pytest.approx(12 / 12, rel=0.2)
    assert list(fake_deepgram.speak_sockets_flushed.values()) == [1]  # one socket, not a second
    assert fake_deepgram.speak_sockets_open() == 1
    await tts.aclose()


async def test_deepgram_tts_opens_sockets_ahead_for_promised_sentences(fake_deepgram: FakeDeepgram) -> None:
    tts = DeepgramTTS(api_key=DEFAULT_API_KEY, base_url=fake_deepgram.base_url)
    tts.prepare()  # two model requests started: two sentences are coming
    tts.prepare()
    await eventually(lambda: fake_deepgram.speak_sockets_open() == 2)

    async def say(sentence: str) -> bytes:
        return b"".join([c async for c in tts.synthesize(sentence)])

    audio = await asyncio.gather(say("Hello there."), say("Party of twelve?"))
    assert [len(a) / 8000 for a in audio] == pytest.approx([12 / 12, 16 / 12], rel=0.2)
    assert sorted(fake_deepgram.speak_sockets_flushed.values()) == [1, 1]  # on the sockets opened ahead
    tts.prepare()  # a fresh idle socket is there for the next one: nothing more is opened
    await asyncio.sleep(0.1)
    assert fake_deepgram.speak_sockets_open() == 2
    await tts.aclose()
    await eventually(lambda: fake_deepgram.speak_sockets_open() == 0)


async def test_deepgram_tts_keeps_each_socket_within_its_flush_allowance(fake_deepgram: FakeDeepgram) -> None:
    tts = DeepgramTTS(api_key=DEFAULT_API_KEY, base_url=fake_deepgram.base_url)
    for n in range(25):
        async for _ in tts.synthesize(f"Sentence {n}."):
            pass
    assert sorted(fake_deepgram.speak_sockets_flushed.values()) == [5, 20]  # 20 a minute per socket
    await tts.aclose()


async def test_deepgram_tts_replaces_a_pooled_socket_the_server_closed(fake_deepgram: FakeDeepgram) -> None:
    tts = DeepgramTTS(api_key=DEFAULT_API_KEY, base_url=fake_deepgram.base_url)
    async for _ in tts.synthesize("Hello."):
        pass
    assert fake_deepgram.drop_speak_sockets() == 1
    await asyncio.sleep(0.1)  # the close reaches the pooled socket
    audio = b"".join([c async for c in tts.synthesize("Still here.")])
    assert len(audio) / 8000 == pytest.approx(len("Still here.") / 12, rel=0.2)
    assert list(fake_deepgram.speak_sockets_flushed.values()) == [1, 1]
    await tts.aclose()


async def test_deepgram_tts_does_not_reuse_a_socket_idle_too_long(fake_deepgram: FakeDeepgram) -> None:
    tts = DeepgramTTS(api_key=DEFAULT_API_KEY, base_url=fake_deepgram.base_url, max_idle=0.05)
    async for _ in tts.synthesize("Hello."):
        pass
    await asyncio.sleep(0.1)
    async for _ in tts.synthesize("Hello again."):
        pass
    assert list(fake_deepgram.speak_sockets_flushed.values()) == [1, 1]
    await tts.aclose()


async def test_tts_wrapper_retries_a_stall_then_gives_up(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.tts_first_byte_delay = 0.5
    tts = InstrumentedTTS(
        DeepgramTTS(api_key=DEFAULT_API_KEY, base_url=fake_deepgram.base_url),
        first_byte_timeout=0.15,
        attempts=2,
    )
    with pytest.raises(TimeoutError):
        async for _ in tts.synthesize("Hello."):
            pass
    assert len(fake_deepgram.speak_requests) == 2


def test_factory_uses_deepgram_with_a_key_and_local_engines_without() -> None:
    keyed = Settings(_env_file=None, deepgram_api_key="k", deepgram_base_url="http://127.0.0.1:9")
    keyless = Settings(_env_file=None)
    assert (build_stt(keyed).name, build_tts(keyed).name) == ("deepgram", "deepgram")
    assert (build_stt(keyless).name, build_tts(keyless).name) == ("local", "local")
    assert build_stt(keyed).capabilities.interim_results
    assert not build_stt(keyless).capabilities.interim_results


# -- local engines -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def booking_audio() -> bytes:
    """The booking sentence spoken by LocalTTS (Piper loads once for the module)."""
    return b"".join([chunk async for chunk in LocalTTS().synthesize(BOOKING_SENTENCE)])


async def test_local_tts_speaks_8khz_mulaw_of_plausible_length(booking_audio: bytes) -> None:
    seconds = len(booking_audio) / 8000
    assert 1.8 < seconds < 5.0
    assert not booking_audio.startswith(b"RIFF")
    assert len(set(booking_audio)) > 100  # real audio, not silence


async def test_local_tts_yields_one_chunk_per_sentence() -> None:
    chunks = [chunk async for chunk in LocalTTS().synthesize("Thanks for calling. See you Saturday.")]
    assert len(chunks) == 2


async def test_local_stt_transcribes_local_tts_speech(booking_audio: bytes) -> None:
    stream = await LocalSTT().open()
    collector = Collector(stream)
    await send_frames(stream, silence(0.3) + booking_audio + silence(0.8))
    await collector.wait_until(has_final)
    billed = await stream.close()
    events = await collector.done()

    assert isinstance(events[0], SpeechStarted)
    assert events[0].at == pytest.approx(0.3, abs=0.25)
    finals = [e for e in events if isinstance(e, Transcript)]
    assert len(finals) == 1
    assert finals[0].speech_final
    assert finals[0].is_final
    words = set(finals[0].text.lower().replace(".", "").replace(",", "").split())
    assert {"booking", "confirmed", "saturday"} <= words
    assert billed == pytest.approx(1.1 + len(booking_audio) / 8000, abs=0.03)
