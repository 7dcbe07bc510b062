"""Speech provider interfaces: streaming STT and TTS on 8 kHz mu-law phone audio.

Providers declare what they can do (`capabilities`); the voice session adapts (e.g.
runs its own endpointing when the STT has none). The base classes own retries,
timeouts and metrics; vendors implement the minimum. Compose fallbacks as another
provider of the same interface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

SAMPLE_RATE = 8000  # phone audio: 8 kHz mu-law, one byte per sample


@dataclass(slots=True, frozen=True)
class STTCapabilities:
    interim_results: bool
    endpointing: bool  # emits speech_final / utterance ends by itself
    vad_events: bool  # emits SpeechStarted
    # Seconds of quiet after speech within which the STT times its end-of-turn events on
    # our audio (Deepgram: the longer of endpointing and utterance_end_ms); 0 if none.
    endpoint_after: float = 0.0


@dataclass(slots=True, frozen=True)
class Transcript:
    """Recognised words; `start`/`end` are seconds of audio since the stream began."""

    text: str
    is_final: bool
    speech_final: bool
    start: float
    end: float
    confidence: float = 1.0


@dataclass(slots=True, frozen=True)
class SpeechStarted:
    at: float


@dataclass(slots=True, frozen=True)
class UtteranceEnd:
    last_word_end: float


STTEvent = Transcript | SpeechStarted | UtteranceEnd


class STTStream(Protocol):
    """One live recognition stream (one per call)."""

    async def send(self, ulaw: bytes) -> None:
        """Queue caller audio (raw 8 kHz mu-law, any length; usually 160-byte frames)."""

    async def finalize(self) -> None:
        """Flush buffered audio into a final transcript now (end of turn forced by us)."""

    def events(self) -> AsyncIterator[STTEvent]:
        """Recognition events, in order, until the stream is closed."""
        ...

    async def close(self) -> float:
        """Finish the stream; returns the audio seconds billed (for the cost meter)."""
        ...


class STT(Protocol):
    name: str
    capabilities: STTCapabilities

    async def open(self) -> STTStream: ...


class TTS(Protocol):
    name: str

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Raw 8 kHz mu-law audio for `text`, in chunks as soon as they exist (no header)."""
        ...

    def prepare(self) -> None:
        """A sentence will follow soon (a model request started): get ready for it, in the
        background (e.g. open a connection). Never raises; doing nothing is allowed."""
        ...
