"""Outbound audio pacing: 20 ms mu-law frames on a steady, deadline-based clock.

Twilio plays what we send at real time and buffers the rest. Sending a whole reply at
once would leave seconds of audio in Twilio's buffer; we keep only `lead` frames ahead
of the playback point, so after a barge-in (`clear`) nothing stale is left to drain,
and our own queue is dropped at once. Frame n of a run is due at
`start + (n - lead) * 20 ms`: deadlines are absolute, so sleep overshoot never
accumulates into drift. When the queue runs dry (TTS slower than real time) the run
ends and the next frame starts a new one.

Besides audio the queue carries marks (sent right after the audio before them) and
cues (a callback when the audio before them has been sent: first-audio latency).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Histogram

FRAME_BYTES = 160
FRAME_SECONDS = 0.02
SILENCE = b"\xff"

SEND_JITTER = Histogram(
    "hibachi_voice_pacer_jitter_seconds",
    "How late each outbound 20 ms frame left versus its deadline",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
)


@dataclass(slots=True, frozen=True)
class MarkItem:
    name: str


@dataclass(slots=True, frozen=True)
class Cue:
    callback: Callable[[], None]


PacerItem = bytes | MarkItem | Cue  # audio frames are queued as bare bytes: no wrapper per frame


def frames_of(ulaw: bytes, remainder: bytearray) -> list[bytes]:
    """Cut audio into whole 160-byte frames, keeping a partial tail in `remainder`."""
    remainder.extend(ulaw)
    whole = len(remainder) - len(remainder) % FRAME_BYTES
    frames = [bytes(remainder[i : i + FRAME_BYTES]) for i in range(0, whole, FRAME_BYTES)]
    del remainder[:whole]
    return frames


def pad_frame(partial: bytes) -> bytes:
    return partial + SILENCE * (FRAME_BYTES - len(partial))


@dataclass(slots=True)
class JitterStats:
    frames: int = 0
    max_late: float = 0.0
    total_late: float = 0.0

    @property
    def mean_late(self) -> float:
        return self.total_late / self.frames if self.frames else 0.0


class Pacer:
    """Sends queued frames every 20 ms, `lead` frames ahead of playback; `clear()` drops the queue."""

    def __init__(
        self,
        send_media: Callable[[bytes], Awaitable[None]],
        send_mark: Callable[[str], Awaitable[None]],
        *,
        lead: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send_media = send_media
        self._send_mark = send_mark
        self.lead = lead
        self.clock = clock
        self._queue: deque[PacerItem] = deque()
        self._ready = asyncio.Event()
        self._generation = 0
        self._run_start = 0.0
        self._run_frames = 0
        self._starved = True  # the queue ran dry since the last frame (gaps then are not lateness)
        self.jitter = JitterStats()
        self.frames_sent = 0

    # ---- producer side ----------------------------------------------------------------

    def push_audio(self, frames: list[bytes]) -> None:
        self._queue.extend(frames)
        self._ready.set()

    def push_mark(self, name: str) -> None:
        self._queue.append(MarkItem(name))
        self._ready.set()

    def push_cue(self, callback: Callable[[], None]) -> None:
        self._queue.append(Cue(callback))
        self._ready.set()

    def clear(self) -> list[str]:
        """Drop everything queued at once; returns the names of the marks never sent."""
        dropped = [item.name for item in self._queue if isinstance(item, MarkItem)]
        self._queue.clear()
        self._generation += 1
        self._run_frames = 0
        return dropped

    @property
    def queued_frames(self) -> int:
        return sum(1 for item in self._queue if isinstance(item, bytes))

    def playout_end(self) -> float:
        """When the audio sent so far finishes playing (monotonic), assuming real-time playback."""
        return self._run_start + self._run_frames * FRAME_SECONDS

    def busy(self) -> bool:
        """Audio is queued here or still playing at the far end."""
        return bool(self._queue) or self.clock() < self.playout_end()

    # ---- the sending loop -------------------------------------------------------------

    def _deadline(self) -> float:
        """When the next frame of the current run is due (the first `lead` frames go at once)."""
        return self._run_start + (self._run_frames - self.lead) * FRAME_SECONDS

    def _record_lateness(self, late: float) -> None:
        self.jitter.frames += 1
        self.jitter.total_late += late
        self.jitter.max_late = max(self.jitter.max_late, late)
        SEND_JITTER.observe(late)

    async def run(self) -> None:
        """Send until cancelled."""
        while True:
            if not self._queue:
                self._starved = True  # nothing to send: a gap now is not lateness
                self._ready.clear()
                await self._ready.wait()
                continue
            item = self._queue[0]
            if isinstance(item, MarkItem):
                self._queue.popleft()
                await self._send_mark(item.name)
                continue
            if isinstance(item, Cue):
                self._queue.popleft()
                item.callback()
                continue
            now = self.clock()
            if self._run_frames and now > self.playout_end():
                if not self._starved:
                    # The frame was ready but the loop was busy: the caller heard a gap.
                    self._record_lateness(now - self._deadline())
                self._run_frames = 0
            if self._run_frames == 0:
                # A new run (first audio, after a clear, or after an underrun).
                self._run_start = now
            deadline = self._deadline()
            if deadline > now:
                generation = self._generation
                await asyncio.sleep(deadline - now)
                if generation != self._generation:
                    continue  # cleared while waiting: this frame is gone
                self._record_lateness(max(0.0, self.clock() - deadline))
            elif self._run_frames >= self.lead:
                # Already past its deadline (a busy loop): that lateness is jitter too. The
                # first `lead` frames of a run are early by design and not counted.
                self._record_lateness(now - deadline)
            if not self._queue or self._queue[0] is not item:
                continue
            self._queue.popleft()
            self._run_frames += 1
            self.frames_sent += 1
            self._starved = False
            await self._send_media(item)
