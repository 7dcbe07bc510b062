"""The real deepgram-sdk against FakeDeepgram: live STT messages and Aura TTS on the wire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.speak.v1.types import SpeakV1Text
from websockets.exceptions import ConnectionClosedError

from telephony.audio import pcm16_to_ulaw
from telephony.fakes.deepgram_server import DEFAULT_API_KEY, FakeDeepgram

LIVE_OPTIONS: dict[str, Any] = {
    "model": "nova-3",
    "encoding": "mulaw",
    "sample_rate": 8000,
    "channels": 1,
    "interim_results": True,
    "endpointing": 300,
    "utterance_end_ms": 1000,
    "vad_events": True,
    "smart_format": True,
    "punctuate": True,
}


def tone(seconds: float, *, hz: float = 300.0) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return pcm16_to_ulaw((8000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes())


def silence(seconds: float) -> bytes:
    return b"\xff" * int(8000 * seconds)


@pytest.fixture(scope="module")
def fake_deepgram() -> Iterator[FakeDeepgram]:
    with FakeDeepgram(stt_final_delay=0.0, tts_first_byte_delay=0.0) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh_fake(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.reset()
    fake_deepgram.stt_final_delay = 0.0
    fake_deepgram.tts_first_byte_delay = 0.0
    fake_deepgram.idle_timeout = 10.0


def client(fake: FakeDeepgram, key: str = DEFAULT_API_KEY) -> AsyncDeepgramClient:
    return AsyncDeepgramClient(api_key=key, environment=fake.environment())


async def send_frames(conn: Any, audio: bytes) -> None:
    for start in range(0, len(audio), 160):
        await conn.send_media(audio[start : start + 160])


async def test_scripted_utterance_gets_interims_final_speech_final_and_utterance_end(
    fake_deepgram: FakeDeepgram,
) -> None:
    fake_deepgram.script_transcripts("I'd like to book a hibachi party for Saturday")
    messages: list[Any] = []
    async with client(fake_deepgram).listen.v1.connect(**LIVE_OPTIONS) as conn:
        await send_frames(conn, silence(0.2) + tone(1.6) + silence(1.4))
        await conn.send_close_stream()
        messages = [message async for message in conn]

    kinds = [m.type for m in messages]
    assert kinds[0] == "SpeechStarted"
    assert messages[0].timestamp == pytest.approx(0.2, abs=0.03)
    interims = [m for m in messages if m.type == "Results" and not m.is_final]
    assert len(interims) >= 2
    shown = [len(m.channel.alternatives[0].transcript.split()) for m in interims]
    assert shown == sorted(shown)
    assert shown[0] < 9  # words revealed progressively
    final = next(m for m in messages if m.type == "Results" and m.is_final)
    assert final.speech_final is True
    assert final.from_finalize is False
    assert final.channel.alternatives[0].transcript == "I'd like to book a hibachi party for Saturday"
    words = final.channel.alternatives[0].words
    assert words[0].start == pytest.approx(0.2, abs=0.03)
    assert words[-1].end == pytest.approx(1.8, abs=0.03)
    assert final.start + final.duration == pytest.approx(1.8 + 0.3, abs=0.03)  # speech end + endpointing
    utterance_end = next(m for m in messages if m.type == "UtteranceEnd")
    assert utterance_end.last_word_end == pytest.approx(1.8, abs=0.03)
    assert kinds.index("UtteranceEnd") > kinds.index("Results")
    assert kinds[-1] == "Metadata"
    assert messages[-1].duration == pytest.approx(3.2)

    conn_record = fake_deepgram.listen_connections[0]
    assert conn_record.query["encoding"] == ["mulaw"]
    assert conn_record.query["interim_results"] == ["true"]
    assert conn_record.headers["authorization"] == f"Token {DEFAULT_API_KEY}"
    assert conn_record.audio_seconds == pytest.approx(3.2)
    assert conn_record.controls == ["CloseStream"]
    assert conn_record.close_code == 1000
    assert fake_deepgram.pending_transcripts == 0


async def test_a_fake_not_recording_still_transcribes_and_speaks_but_keeps_no_messages(
    fake_deepgram: FakeDeepgram,
) -> None:
    fake_deepgram.record = False
    fake_deepgram.script_transcripts("table for four")
    async with client(fake_deepgram).listen.v1.connect(**LIVE_OPTIONS) as conn:
        await send_frames(conn, tone(0.8) + silence(0.6))
        async for message in conn:
            if message.type == "Results" and message.is_final:
                final = message
                break
        await conn.send_close_stream()
    async with client(fake_deepgram).speak.v1.connect(
        model="aura-2-thalia-en", encoding="mulaw", sample_rate=8000
    ) as tts:
        await tts.send_text(SpeakV1Text(type="Speak", text="Sure."))
        await tts.send_flush()
        received = []
        while getattr(message := await tts.recv(), "type", None) != "Flushed":
            received.append(message)
    audio = b"".join(m for m in received if isinstance(m, bytes))

    assert final.channel.alternatives[0].transcript == "table for four"
    assert len(audio) > 0
    conn_record = fake_deepgram.listen_connections[0]
    assert conn_record.audio_seconds == pytest.approx(1.4)
    assert conn_record.sent == []
    assert conn_record.audio_messages == []
    assert fake_deepgram.speak_requests == []
    assert list(fake_deepgram.speak_sockets_flushed.values()) == [1]
    fake_deepgram.reset()
    assert fake_deepgram.record is True


async def test_final_waits_the_configured_latency_after_the_endpoint(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.stt_final_delay = 0.4
    fake_deepgram.script_transcripts("yes")
    async with client(fake_deepgram).listen.v1.connect(**LIVE_OPTIONS) as conn:
        await send_frames(conn, tone(0.5) + silence(0.4))
        sent_at = time.monotonic()
        async for message in conn:
            if message.type == "Results" and message.is_final:
                waited = time.monotonic() - sent_at
                break
        await conn.send_close_stream()
    assert 0.35 <= waited < 1.0


async def test_finalize_flushes_the_utterance_in_progress(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.script_transcripts("party of twelve")
    async with client(fake_deepgram).listen.v1.connect(**LIVE_OPTIONS) as conn:
        await send_frames(conn, tone(0.8))  # still speaking: no endpoint yet
        await conn.send_finalize()
        async for message in conn:
            if message.type == "Results" and message.is_final:
                final = message
                break
        await conn.send_close_stream()
    assert final.from_finalize is True
    assert final.speech_final is False
    assert final.channel.alternatives[0].transcript == "party of twelve"
    assert fake_deepgram.listen_connections[0].controls == ["Finalize", "CloseStream"]


async def test_keepalive_holds_an_idle_socket_and_silence_gets_net0001(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.idle_timeout = 0.5
    async with client(fake_deepgram).listen.v1.connect(**LIVE_OPTIONS) as conn:
        for _ in range(5):  # 1 s of no audio, kept alive
            await conn.send_keep_alive()
            await asyncio.sleep(0.2)
        assert fake_deepgram.listen_connections[0].close_code is None
        error = await conn.recv()  # now nothing: the server gives up
        assert error.type == "Error"
        assert error.variant == "NET-0001"
        with pytest.raises(ConnectionClosedError):
            await conn.recv()
    record = fake_deepgram.listen_connections[0]
    assert record.controls == ["KeepAlive"] * 5
    assert record.close_code == 1011


async def test_a_wrong_key_fails_the_handshake_with_401(fake_deepgram: FakeDeepgram) -> None:
    with pytest.raises(ApiError) as failure:
        async with client(fake_deepgram, "wrong-key").listen.v1.connect(**LIVE_OPTIONS):
            pass
    assert failure.value.status_code == 401


async def test_aura_rest_streams_raw_mulaw_after_the_first_byte_delay(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.tts_first_byte_delay = 0.3
    text = "Your booking is confirmed for Saturday at 6 pm."
    started = time.monotonic()
    first_at = 0.0
    audio = b""
    async for chunk in client(fake_deepgram).speak.v1.audio.generate(
        text=text, model="aura-2-thalia-en", encoding="mulaw", sample_rate=8000, container="none"
    ):
        first_at = first_at or time.monotonic() - started
        audio += chunk
    assert 0.28 <= first_at < 1.0
    assert not audio.startswith(b"RIFF")
    assert len(audio) / 8000 == pytest.approx(len(text) / fake_deepgram.chars_per_second, rel=0.15)
    request = fake_deepgram.speak_requests[0]
    assert request.json == {"text": text}
    assert request.form == {
        "container": ["none"],
        "encoding": ["mulaw"],
        "model": ["aura-2-thalia-en"],
        "sample_rate": ["8000"],
    }


async def test_aura_socket_clear_stops_the_flushed_sentence_at_once(fake_deepgram: FakeDeepgram) -> None:
    fake_deepgram.tts_first_byte_delay = 0.5
    async with client(fake_deepgram).speak.v1.connect(
        model="aura-2-thalia-en", encoding="mulaw", sample_rate=8000
    ) as tts:
        await tts.send_text(SpeakV1Text(type="Speak", text="Your table is booked."))
        await tts.send_flush()
        started = time.monotonic()
        await tts.send_clear()
        received = [await tts.recv() for _ in range(2)]  # the socket's Metadata, then...
        assert time.monotonic() - started < 0.4  # ...`Cleared` before any audio was due
        assert [getattr(m, "type", None) for m in received] == ["Metadata", "Cleared"]
        await tts.send_text(SpeakV1Text(type="Speak", text="Sure."))
        await tts.send_flush()
        audio = b""
        while isinstance(message := await tts.recv(), bytes):
            audio += message
        assert getattr(message, "type", None) == "Flushed"
    assert len(audio) / 8000 == pytest.approx(len("Sure.") / fake_deepgram.chars_per_second, rel=0.2)


async def test_aura_without_container_none_gets_a_wav_header(fake_deepgram: FakeDeepgram) -> None:
    chunks = [
        chunk
        async for chunk in client(fake_deepgram).speak.v1.audio.generate(
            text="Hello.", encoding="mulaw", sample_rate=8000
        )
    ]
    assert b"".join(chunks).startswith(b"RIFF")


async def test_fake_tts_audio_is_heard_as_one_utterance_by_the_fake_stt(fake_deepgram: FakeDeepgram) -> None:
    speech = b"".join(
        [
            chunk
            async for chunk in client(fake_deepgram).speak.v1.audio.generate(
                text="Saturday at six works.", encoding="mulaw", sample_rate=8000, container="none"
            )
        ]
    )
    fake_deepgram.script_transcripts("Saturday at six works.")
    async with client(fake_deepgram).listen.v1.connect(**LIVE_OPTIONS) as conn:
        await send_frames(conn, speech + silence(0.5))
        await conn.send_close_stream()
        finals = [m async for m in conn if m.type == "Results" and m.is_final]
    assert [f.channel.alternatives[0].transcript for f in finals] == ["Saturday at six works."]
