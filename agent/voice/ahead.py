"""Speech ahead: a draft's first sentence, synthesised while the caller may still be talking.

Pre-emptive generation (`agent.voice.calls.TurnDraft`) lets the model overlap the STT's
endpointing; this lets the TTS overlap it too. The session feeds a draft's text to a
`SpeechAhead` as it streams; once the first sentence is complete, its synthesis starts.
Nothing is played: if the final transcript confirms the draft, the reply's first sentence
plays from here (`take`) instead of waiting for the TTS's first byte; if the draft is
discarded, `cancel` stops it. Either way the characters sent to the TTS are billed, so the
session counts them (`sentence`).

While the caller is still talking (`hold()`), a finished first sentence waits: a draft
made mid-speech is usually overtaken by the next words, and its audio would be paid for
and thrown away. The session `release`s it once the caller has gone quiet; the STT's
endpointing (300 ms) is longer than a TTS's first byte, so a reply loses nothing by it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from agent.aio import free_when_cancelled
from agent.speech.base import TTS
from agent.voice.text import SentenceSplitter

log = logging.getLogger(__name__)


class SpeechAhead:
    def __init__(
        self, tts: TTS, clock: Callable[[], float], hold: Callable[[], bool] = lambda: False
    ) -> None:
        self._tts = tts
        self._clock = clock
        self._hold = hold
        self._splitter = SentenceSplitter()
        self.held: str | None = None  # a first sentence waiting for the caller to go quiet
        self.ready: float | None = None  # when the first sentence was complete (on `clock`)
        self.sentence: str | None = None  # set when its synthesis starts
        self.started: float | None = None  # when (on `clock`)
        self.taken = False
        self._chunks: list[bytes] = []
        self._more = asyncio.Event()
        self._finished = False
        self._failed = False
        self._task: asyncio.Task[None] | None = None

    def feed(self, text: str | None) -> None:
        """The draft's next piece of text, or None once its text is complete."""
        if self.sentence is not None or self.held is not None:
            return
        sentences = self._splitter.push(text) if text is not None else self._splitter.flush()
        if sentences:
            self.held = sentences[0]
            self.ready = self._clock()
            if not self._hold():
                self.release()

    def release(self) -> None:
        """Start synthesising the held sentence (the caller went quiet, or it is to be played)."""
        if self.held is None or self.sentence is not None:
            return
        self.sentence, self.held = self.held, None
        self.started = self._clock()
        self._task = asyncio.create_task(self._synthesize(self.sentence), name="voice:speech-ahead")
        self._task.add_done_callback(free_when_cancelled)

    async def _synthesize(self, sentence: str) -> None:
        chunks = self._tts.synthesize(sentence)
        try:
            async for chunk in chunks:
                self._chunks.append(chunk)
                self._more.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # the reply then asks the TTS again, through its retries
            log.warning("speech ahead failed; the reply will synthesise its first sentence itself")
            self._failed = True
        finally:
            self._finished = True
            self._more.set()
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    def take(self, sentence: str) -> AsyncIterator[bytes] | None:
        """The audio of `sentence` if it is the one being synthesised ahead, else None."""
        if sentence == self.held:
            self.release()
        if self.taken or sentence != self.sentence:
            return None
        self.taken = True
        return self._stream(sentence)

    async def _stream(self, sentence: str) -> AsyncIterator[bytes]:
        index = 0
        while True:
            while index < len(self._chunks):
                yield self._chunks[index]
                index += 1
            if self._finished:
                break
            self._more.clear()
            await self._more.wait()
        if self._failed and index == 0:  # nothing came ahead: ask the TTS again, now
            async for chunk in self._tts.synthesize(sentence):
                yield chunk

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
