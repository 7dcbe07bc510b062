"""What every speech provider gets from the base: retries, timeouts and metrics.

`InstrumentedSTT` / `InstrumentedTTS` wrap a provider and are providers of the same
interface, so the voice session never knows. Metrics:
`hibachi_tts_first_byte_seconds{provider}` (request to first audio),
`hibachi_stt_final_seconds{provider}` (wall time from sending the audio a final ends
at to receiving that final; with real-time audio, the end-of-words-to-text latency),
`hibachi_speech_failures_total{provider,kind}`.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator

from prometheus_client import Counter, Histogram

from agent.speech.base import SAMPLE_RATE, STT, TTS, STTEvent, STTStream, Transcript

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)

TTS_FIRST_BYTE = Histogram(
    "hibachi_tts_first_byte_seconds",
    "Seconds from a TTS request to its first audio.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
STT_FINAL = Histogram(
    "hibachi_stt_final_seconds",
    "Seconds from sending the audio a final transcript ends at to receiving the final.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
SPEECH_FAILURES = Counter(
    "hibachi_speech_failures_total", "Speech provider attempts that failed.", ["provider", "kind"]
)

Errors = tuple[type[Exception], ...]


class InstrumentedTTS:
    """Retries a synthesis that fails or stalls before its first audio; times the first byte.

    Once audio went out a failure is re-raised (the caller may already be hearing it).
    """

    def __init__(
        self, inner: TTS, *, retry_on: Errors = (OSError,), first_byte_timeout: float = 5.0, attempts: int = 2
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.retry_on = retry_on
        self.first_byte_timeout = first_byte_timeout
        self.attempts = attempts

    def prepare(self) -> None:
        self.inner.prepare()

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        catch: Errors = (TimeoutError, *self.retry_on)
        for attempt in range(1, self.attempts + 1):
            started = time.monotonic()
            chunks = self.inner.synthesize(text)
            try:
                first = await asyncio.wait_for(anext(chunks), self.first_byte_timeout)
            except StopAsyncIteration:
                return
            except catch as error:
                await _close(chunks)
                kind = "timeout" if isinstance(error, TimeoutError) else "error"
                SPEECH_FAILURES.labels(self.name, f"tts_{kind}").inc()
                if attempt == self.attempts:
                    raise
                log.warning("tts %s failed before audio (%r); retrying", self.name, error)
                continue
            TTS_FIRST_BYTE.labels(self.name).observe(time.monotonic() - started)
            try:
                yield first
                async for chunk in chunks:
                    yield chunk
            finally:
                await _close(chunks)
            return

    async def aclose(self) -> None:
        """Release what the provider keeps open between requests (pooled sockets)."""
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()


async def _close(chunks: AsyncIterator[bytes]) -> None:
    if isinstance(chunks, AsyncGenerator):
        await chunks.aclose()


class InstrumentedSTT:
    """Opens streams with a timeout and retries; measures final-transcript latency."""

    def __init__(
        self, inner: STT, *, retry_on: Errors = (OSError,), open_timeout: float = 5.0, attempts: int = 3
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.retry_on = retry_on
        self.open_timeout = open_timeout
        self.attempts = attempts

    async def open(self) -> STTStream:
        catch: Errors = (TimeoutError, *self.retry_on)
        for attempt in range(1, self.attempts + 1):
            try:
                stream = await asyncio.wait_for(self.inner.open(), self.open_timeout)
            except catch as error:
                SPEECH_FAILURES.labels(self.name, "stt_open").inc()
                if attempt == self.attempts:
                    raise
                log.warning("stt %s failed to open (%r); retrying", self.name, error)
                await asyncio.sleep(0.1 * attempt)
                continue
            return MeteredSTTStream(stream, self.name)
        raise AssertionError("unreachable")


class MeteredSTTStream:
    """Passes a stream through, remembering when each audio byte was sent."""

    def __init__(self, inner: STTStream, provider: str) -> None:
        self.inner = inner
        self.provider = provider
        self._sent = 0
        self._ends: deque[int] = deque(maxlen=6000)  # byte offset after each send (~2 min of frames)
        self._times: deque[float] = deque(maxlen=6000)

    async def send(self, ulaw: bytes) -> None:
        self._sent += len(ulaw)
        self._ends.append(self._sent)
        self._times.append(time.monotonic())
        await self.inner.send(ulaw)

    async def finalize(self) -> None:
        await self.inner.finalize()

    async def events(self) -> AsyncIterator[STTEvent]:
        async for event in self.inner.events():
            if isinstance(event, Transcript) and event.is_final and event.text:
                self._observe(event.end)
            yield event

    def _observe(self, end_seconds: float) -> None:
        index = bisect.bisect_left(self._ends, round(end_seconds * SAMPLE_RATE))
        if self._ends and index < len(self._ends):
            STT_FINAL.labels(self.provider).observe(max(0.0, time.monotonic() - self._times[index]))

    async def close(self) -> float:
        return await self.inner.close()
