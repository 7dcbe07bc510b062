"""One live phone call: caller audio -> STT -> turn-taking -> brain -> sentences -> TTS -> paced audio.

Everything that changes the call's state happens in one loop over small typed
events (`SttIn`, `PlaybackMark`, `KeyPress`, `Silence`, `TimeLimit`, `CallerGone`),
one handler per kind; long work (a brain turn, speaking) runs in tasks the session
owns and cancels on hang-up.

Turn-taking follows the STT's endpointing: `is_final` segments are joined until
`speech_final` or `UtteranceEnd`; empty finals are ignored. While the agent speaks,
caller speech is a barge-in only when it is real words (two or more, 400 ms or more,
or "stop"/"wait"), never a backchannel like "mhm" or "yeah okay". A barge-in drops
our queued audio at once, sends Twilio `clear`, stops the rest of the turn's speech
(its control effects - transfer, hang-up - still happen) and cuts the agent's message
to what the caller heard: the sentences whose marks came back, plus the played share
of the current one.

An STT without interim results (LocalSTT) reports words only as finals, once the
caller stopped: a non-backchannel final that arrives while the agent speaks is a
barge-in too, so such callers can still interrupt.

Pre-emptive generation (`VoiceConfig.preempt`, on when the STT has interim results):
when the caller's words (finals so far + the latest interim, compared as lower-case
words) have not changed for `preempt_after` (100 ms), and do not stop mid-sentence (on
"the", "for", "to", "um", ...: `text.unfinished`), a `TurnDraft` starts the brain on
them. The draft has no effects until confirmed: it writes nothing, its text is buffered
(no audio), and its first effectful tool call waits. When the final arrives
with the same words the turn adopts the draft (its reply is already there: the
endpointing wait and the final's delay are hidden); if new words arrive, or the final
differs, the draft is cancelled and the full utterance gets one ordinary turn. At
most `preempt_max_per_turn` drafts per caller turn; none while a turn runs or the agent
speaks. The adopted turn's marks include `preempted` (the draft's start).

The reply is spoken sentence by sentence while the brain still streams. If no text
comes within `filler_after` (a slow tool), a short filler is said. Per turn, latency
marks in ms from the caller's end of speech (speech_end, final_transcript,
first_token, first_sentence, first_tts_byte, first_audio_sent) go on the agent's
message and into `hibachi_voice_turn_seconds{stage}`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from agent.models import TransferReason
from agent.speech.base import (
    SAMPLE_RATE,
    STT,
    TTS,
    SpeechStarted,
    STTEvent,
    STTStream,
    Transcript,
    UtteranceEnd,
)
from agent.tools.base import Effect
from agent.voice.ahead import SpeechAhead
from agent.voice.calls import CallUsage, TurnDraft, VoiceCall, VoiceCalls, VoiceTurnResult
from agent.voice.pacer import FRAME_BYTES, FRAME_SECONDS, Pacer, frames_of, pad_frame
from agent.voice.text import (
    FILLER,
    GOODBYE_SILENT,
    GOODBYE_TIME_LIMIT,
    MENU_CHOICES,
    STILL_THERE,
    TRANSFER_FAILED,
    SentenceSplitter,
    greeting,
    is_backchannel,
    unfinished,
    wants_floor,
    word_key,
)
from telephony.audio import is_loud

log = logging.getLogger(__name__)

TURN_SECONDS = Histogram(
    "hibachi_voice_turn_seconds",
    "Voice turn latency from the caller's end of speech, by stage",
    ["stage"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5),
)
PREEMPTIONS = Counter(
    "hibachi_voice_preemptions_total",
    "Pre-emptive drafts of a caller turn, by outcome (started, adopted, discarded)",
    ["outcome"],
)
STAGES = ("final_transcript", "first_token", "first_sentence", "first_tts_byte", "first_audio_sent")


@dataclass(slots=True, frozen=True)
class VoiceConfig:
    """Timing rules of a call (seconds)."""

    silence_timeout: float = 8.0
    max_call_seconds: float = 15 * 60
    filler_after: float = 0.7
    barge_in_min_words: int = 2
    barge_in_min_seconds: float = 0.4
    pacer_lead_frames: int = 3
    # Caller audio goes to the STT in batches (Deepgram asks for 20-250 ms a message); each
    # message costs CPU at both ends. Speech goes `stt_frames_per_send` frames at a time
    # (interims and barge-in words at most 40 ms later), its first loud frame at once. A quiet
    # line goes `stt_quiet_frames_per_send` at a time, except within the STT's
    # `endpoint_after` (Deepgram: utterance end, 1 s) plus `stt_endpoint_margin` s after
    # speech while the agent is silent: the STT times its endpointing and utterance end on
    # those frames, so each goes at once and a final is never held back.
    stt_frames_per_send: int = 3
    stt_quiet_frames_per_send: int = 10
    stt_endpoint_margin: float = 0.5
    # A draft's first sentence goes to the TTS ahead of the final only once the caller's
    # audio has been quiet this long (longer than the gaps between words): one made while
    # they talk is usually overtaken, and its synthesis would be billed for nothing.
    speech_ahead_after_quiet: float = 0.1
    # Pre-emptive generation (see `agent.voice.calls.TurnDraft`): start the brain once the
    # caller's words have not changed for `preempt_after` s, before the final transcript.
    # Interims come hundreds of ms apart (the local Deepgram server: one per 500 ms of
    # speech), so a shorter wait rarely starts more drafts; it starts them sooner (100 ms
    # against 180: the same 500 drafts per 100 calls, end-to-end p90 323 against 394 ms,
    # benchmarks/RESULTS.md 2026-12-07 fourth session).
    preempt: bool = True
    preempt_after: float = 0.1
    preempt_max_per_turn: int = 3  # drafts per caller turn (each may spend model tokens)
    # A key menu in the greeting (1 book, 2 prices, 0 staff) until the caller's first turn.
    menu: bool = False


class CallLink(Protocol):
    """The provider side of the call: outbound audio and live-call control."""

    async def send_media(self, ulaw: bytes) -> None: ...

    async def send_mark(self, name: str) -> None: ...

    async def send_clear(self) -> None: ...

    async def transfer(self, *, to_phone: str, caller_id: str) -> bool:
        """Connect the caller to `to_phone`; False if the provider refused (the call goes on)."""
        ...

    async def hang_up(self) -> None: ...


# ---- events --------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class SttIn:
    event: STTEvent


@dataclass(slots=True, frozen=True)
class PlaybackMark:
    name: str


@dataclass(slots=True, frozen=True)
class KeyPress:
    digit: str


@dataclass(slots=True, frozen=True)
class Silence:
    pass


@dataclass(slots=True, frozen=True)
class TimeLimit:
    pass


@dataclass(slots=True, frozen=True)
class CallerGone:
    pass


@dataclass(slots=True, frozen=True)
class Stable:
    """The caller's words have not changed for `preempt_after` (version of those words)."""

    version: int


SessionEvent = SttIn | PlaybackMark | KeyPress | Silence | TimeLimit | CallerGone | Stable


@dataclass(slots=True, frozen=True)
class Preemption:
    """A draft turn started on a stable interim: its words (normalised) and start time."""

    draft: TurnDraft
    words: tuple[str, ...]
    started: float
    ahead: SpeechAhead  # its first sentence, synthesised before the caller finished


# ---- what the agent says -------------------------------------------------------------------


@dataclass(slots=True)
class TurnTiming:
    """Latency marks of one turn, in ms from the caller's end of speech (monotonic clock)."""

    origin: float
    clock: Callable[[], float]
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str) -> None:
        if stage not in self.marks:
            self.marks[stage] = round((self.clock() - self.origin) * 1000, 1)


@dataclass(slots=True)
class SentSentence:
    mark: str
    text: str
    frames: int


class Utterance:
    """One thing the agent says (greeting, reply, filler, prompt) and how much of it was played."""

    def __init__(self, uid: int, kind: str, clock: Callable[[], float], timing: TurnTiming | None) -> None:
        self.uid = uid
        self.kind = kind
        self.clock = clock
        self.timing = timing
        self.splitter = SentenceSplitter()
        self.sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: list[SentSentence] = []
        self.heard: list[str] = []  # mark names echoed back, in order
        self.all_queued = False
        self.interrupted = False
        self.text_closed = False
        self.ahead: SpeechAhead | None = None  # a reply's first sentence, synthesised ahead
        self.done = asyncio.Event()  # fully played, or interrupted
        self.audio_started_at: float | None = None
        self.last_mark_at: float | None = None
        self.heard_text: str | None = None  # set on interruption

    def push_text(self, delta: str) -> None:
        if self.interrupted:
            return
        for sentence in self.splitter.push(delta):
            self._sentence(sentence)

    def close_text(self) -> None:
        """No more text: speak what the splitter still holds (once; later calls do nothing)."""
        if self.text_closed:
            return
        self.text_closed = True
        for sentence in self.splitter.flush():
            if not self.interrupted:
                self._sentence(sentence)
        self.sentences.put_nowait(None)

    def _sentence(self, sentence: str) -> None:
        if self.timing is not None:
            self.timing.mark("first_sentence")
        self.sentences.put_nowait(sentence)

    def on_mark(self, name: str) -> None:
        if self.interrupted or name in self.heard:
            return
        self.heard.append(name)
        self.last_mark_at = self.clock()
        self.check_done()

    def check_done(self) -> None:
        if self.all_queued and len(self.heard) >= len(self.sent):
            self.done.set()

    def interrupt(self) -> str:
        """Stop here; returns the text the caller heard (whole sentences + the played share)."""
        if self.interrupted:
            return self.heard_text or ""
        now = self.clock()
        self.interrupted = True
        heard_marks = set(self.heard)
        parts = [s.text for s in self.sent if s.mark in heard_marks]
        current = next((s for s in self.sent if s.mark not in heard_marks), None)
        started = self.last_mark_at or self.audio_started_at
        if current is not None and started is not None and current.frames:
            share = min(1.0, max(0.0, (now - started) / (current.frames * FRAME_SECONDS)))
            said = current.text.split()
            cut = int(len(said) * share)
            if cut:
                parts.append(" ".join(said[:cut]) + ("" if cut == len(said) else " -"))
        self.heard_text = " ".join(parts).strip()
        self.done.set()
        return self.heard_text


# ---- the session ---------------------------------------------------------------------------


class VoiceSession:
    """One call, from `open()` to the end of `run()` (which writes the call's cost)."""

    def __init__(
        self,
        *,
        calls: VoiceCalls,
        call: VoiceCall,
        stt: STT,
        tts: TTS,
        link: CallLink,
        config: VoiceConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.calls = calls
        self.call = call
        self.stt = stt
        self.tts = tts
        self.link = link
        self.config = config or VoiceConfig()
        self.clock = clock
        self.pacer = Pacer(link.send_media, link.send_mark, lead=self.config.pacer_lead_frames, clock=clock)
        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stream: STTStream | None = None
        self._uids = itertools.count(1)
        self._live: list[Utterance] = []  # said or being said, not yet fully played
        self._by_mark: dict[str, Utterance] = {}
        self._speak_lock = asyncio.Lock()  # one utterance feeds the pacer at a time
        self._brain_lock = asyncio.Lock()  # turns run one after another
        self._segments: list[str] = []
        self._turns_active = 0
        self._caller_turns = 0  # turns the caller has taken (the key menu is for before the first)
        # When the caller's audio (as the STT counts it) began, on our clock; see `feed_audio`.
        self._audio_origin: float | None = None
        self._audio_fed = 0.0  # seconds of caller audio given to the STT
        self._stt_pending = bytearray()  # caller audio held back to go in one STT message
        self._last_loud = -1e9  # audio seconds at the end of the caller's last loud frame
        self._started = clock()
        self._silence_deadline: float | None = None
        self._silence_strikes = 0
        self._timers_changed = asyncio.Event()
        self._ending = False
        self._ended = asyncio.Event()
        self.tts_characters = 0
        self.transferred_to: str | None = None
        # Pre-emptive generation: the caller's words so far, and the draft thinking about them.
        self._preempt = self.config.preempt and stt.capabilities.interim_results
        self._endpoint_window = stt.capabilities.endpoint_after + self.config.stt_endpoint_margin
        self._candidate: tuple[str, ...] = ()
        self._candidate_text = ""
        self._candidate_version = 0
        self._stable_timer: asyncio.TimerHandle | None = None
        self._preemption: Preemption | None = None
        self._drafts_this_turn = 0
        self.drafts_started = 0
        self.drafts_discarded = 0

    # ---- feeding from the edge ---------------------------------------------------------

    async def open(self) -> None:
        """Open the STT stream (before caller audio is fed)."""
        self._stream = await self.stt.open()

    async def feed_audio(self, ulaw: bytes) -> None:
        if self._stream is None or self._ending:
            return
        # A frame leaves the carrier once its 20 ms were captured, and may reach us late
        # (queued while we were busy) but never early: the earliest arrival minus the audio
        # up to the frame's end is the best estimate of when the audio began. Speech-end
        # times, and so every per-turn latency mark, hang on it.
        self._audio_fed += len(ulaw) / SAMPLE_RATE
        origin = self.clock() - self._audio_fed
        if self._audio_origin is None or origin < self._audio_origin:
            self._audio_origin = origin
        quiet = self._audio_fed - self._last_loud  # from the last loud frame's end to this one's
        if is_loud(ulaw):
            self._last_loud = self._audio_fed
            onset = quiet > len(ulaw) / SAMPLE_RATE + 1e-6  # the frame before was quiet
            batch = 1 if onset else self.config.stt_frames_per_send
        else:
            timed = quiet <= self._endpoint_window and not self.pacer.busy()
            batch = 1 if timed else self.config.stt_quiet_frames_per_send
            held = self._preemption.ahead if self._preemption is not None else None
            if held is not None and held.held and not self._caller_talking():
                held.release()
        if len(self._stt_pending) + len(ulaw) < batch * FRAME_BYTES:
            self._stt_pending += ulaw
            return
        if self._stt_pending:
            ulaw, self._stt_pending = bytes(self._stt_pending + ulaw), bytearray()
        await self._stream.send(ulaw)

    def on_mark(self, name: str) -> None:
        self._events.put_nowait(PlaybackMark(name))

    def on_dtmf(self, digit: str) -> None:
        self._events.put_nowait(KeyPress(digit))

    def caller_gone(self) -> None:
        self._events.put_nowait(CallerGone())

    @property
    def ended(self) -> asyncio.Event:
        """Set once the session decided the call is over (hang-up, transfer, caller gone)."""
        return self._ended

    # ---- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the call until it ends, then save its cost (the transcript is saved as it goes)."""
        if self._stream is None:
            await self.open()
        try:
            self._spawn(self.pacer.run(), "pacer")
            self._spawn(self._read_stt(), "stt")
            self._spawn(self._watch_timers(), "timers")
            self._spawn(
                self._say_recorded(
                    greeting(self.call.location_name, self.call.timezone, self._now(), menu=self.config.menu)
                )
            )
            while not self._ending:
                event = await self._events.get()
                await self._handle(event)
        finally:
            await self._shutdown()

    async def _handle(self, event: SessionEvent) -> None:
        match event:
            case SttIn(event=SpeechStarted() as started):
                self._on_speech_started(started)
            case SttIn(event=Transcript() as transcript):
                await self._on_transcript(transcript)
            case SttIn(event=UtteranceEnd() as end):
                self._on_utterance_end(end)
            case PlaybackMark(name=name):
                self._on_mark(name)
            case KeyPress(digit=digit):
                await self._on_key(digit)
            case Silence():
                self._on_silence()
            case TimeLimit():
                self._on_time_limit()
            case CallerGone():
                self._ending = True
            case Stable(version=version):
                self._on_stable(version)

    # ---- STT events: turn-taking and barge-in ------------------------------------------

    def _on_speech_started(self, _: SpeechStarted) -> None:
        self._disarm_silence()

    async def _on_transcript(self, transcript: Transcript) -> None:
        text = transcript.text.strip()
        if text:
            self._disarm_silence()
            if self._agent_speaking():
                if is_backchannel(text):
                    return  # "mhm" while we talk: not a turn, not an interruption
                seconds = transcript.end - transcript.start
                floor = wants_floor(
                    text,
                    seconds=seconds,
                    min_words=self.config.barge_in_min_words,
                    min_seconds=self.config.barge_in_min_seconds,
                )
                if floor or transcript.is_final:
                    await self._barge_in()
            if transcript.is_final:
                self._segments.append(text)
            if self._preempt and not transcript.speech_final:
                self._track_words(text, transcript.is_final)
        if transcript.speech_final:
            self._end_of_turn(transcript.end)

    def _on_utterance_end(self, end: UtteranceEnd) -> None:
        self._end_of_turn(end.last_word_end)

    def _end_of_turn(self, last_word_end: float) -> None:
        text = " ".join(self._segments).strip()
        self._segments.clear()
        preemption, self._preemption = self._preemption, None
        self._reset_words()
        if preemption is not None and (not text or word_key(text) != preemption.words):
            self._discard(preemption)  # the caller went on (or it was noise): think again
            preemption = None
        if not text:
            return  # empty finals and repeated ends are not turns
        now = self.clock()
        origin = now if self._audio_origin is None else min(now, self._audio_origin + last_word_end)
        timing = TurnTiming(origin=origin, clock=self.clock)
        timing.mark("final_transcript")
        if preemption is not None:
            timing.marks["preempted"] = round((preemption.started - origin) * 1000, 1)
            PREEMPTIONS.labels("adopted").inc()
        self._start_turn(text, timing, preemption)

    def _start_turn(self, text: str, timing: TurnTiming, preemption: Preemption | None = None) -> None:
        timing.marks["speech_end"] = 0.0
        self._silence_strikes = 0
        self._caller_turns += 1
        self._turns_active += 1
        self._spawn(self._turn(text, timing, preemption), "turn")

    # ---- pre-emptive generation --------------------------------------------------------

    def _track_words(self, text: str, is_final: bool) -> None:
        """Follow the caller's words; (re)start the stability timer whenever they change."""
        candidate = " ".join(self._segments) if is_final else " ".join((*self._segments, text))
        said = word_key(candidate)
        if said == self._candidate:
            return  # same words again (a repeated interim, or its final): still stable
        self._candidate = said
        self._candidate_text = candidate
        self._candidate_version += 1
        if self._preemption is not None:  # the caller went on: that draft answers the wrong thing
            preemption, self._preemption = self._preemption, None
            self._discard(preemption)
        if self._stable_timer is not None:
            self._stable_timer.cancel()
        self._stable_timer = None
        if said and not unfinished(said):  # mid-sentence words wait for the next ones
            self._stable_timer = asyncio.get_running_loop().call_later(
                self.config.preempt_after, self._events.put_nowait, Stable(self._candidate_version)
            )

    def _reset_words(self) -> None:
        self._candidate = ()
        self._candidate_text = ""
        self._candidate_version += 1  # a Stable already queued is stale now
        self._drafts_this_turn = 0
        if self._stable_timer is not None:
            self._stable_timer.cancel()
            self._stable_timer = None

    def _on_stable(self, version: int) -> None:
        if version != self._candidate_version or self._preemption is not None or self._ending:
            return
        if self._turns_active or self._brain_lock.locked() or self._agent_speaking():
            # Think ahead only when nothing else is going on; look again a little later.
            self._stable_timer = asyncio.get_running_loop().call_later(
                self.config.preempt_after, self._events.put_nowait, Stable(version)
            )
            return
        if self._drafts_this_turn >= self.config.preempt_max_per_turn:
            return
        self._drafts_this_turn += 1
        self.drafts_started += 1
        PREEMPTIONS.labels("started").inc()
        draft = self.calls.draft(self.call, self._candidate_text)
        self.tts.prepare()  # its first sentence is ~a model's first token away
        ahead = SpeechAhead(self.tts, self.clock, hold=self._caller_talking)
        draft.preview = ahead.feed
        self._preemption = Preemption(draft, self._candidate, self.clock(), ahead)

    def _discard(self, preemption: Preemption) -> None:
        self.drafts_discarded += 1
        PREEMPTIONS.labels("discarded").inc()
        preemption.draft.cancel()  # at once, even if the session is shutting down
        self._drop_ahead(preemption.ahead)
        self._spawn(preemption.draft.discard(), "discard-draft")

    def _drop_ahead(self, ahead: SpeechAhead | None) -> None:
        """Stop speech synthesised ahead that will not be played; its characters are billed."""
        if ahead is None or ahead.taken:
            return
        ahead.cancel()
        if ahead.sentence is not None:
            self.tts_characters += len(ahead.sentence)

    def _caller_talking(self) -> bool:
        return self._audio_fed - self._last_loud < self.config.speech_ahead_after_quiet

    def _agent_speaking(self) -> bool:
        return any(not u.done.is_set() for u in self._live)

    async def _barge_in(self) -> None:
        """The caller took the floor: silence us now and forget the rest of what we meant to say."""
        live = [u for u in self._live if not u.done.is_set()]
        if not live:
            return
        self.pacer.clear()
        await self.link.send_clear()
        for utterance in live:
            utterance.interrupt()
        log.info("barge-in on call %s", self.call.call_sid)

    def _on_mark(self, name: str) -> None:
        utterance = self._by_mark.get(name)
        if utterance is not None:
            utterance.on_mark(name)

    # ---- keys, silence, limits ---------------------------------------------------------

    async def _on_key(self, digit: str) -> None:
        self._disarm_silence()
        choice = MENU_CHOICES.get(digit) if self.config.menu and not self._caller_turns else None
        if digit != "0" and choice is None:
            return
        await self._barge_in()
        if self._preemption is not None:
            preemption, self._preemption = self._preemption, None
            self._discard(preemption)
        if digit == "0":
            self._spawn(self._transfer_on_request(), "dtmf-transfer")
        elif choice is not None:  # the key stands for what the caller would have said
            self._start_turn(choice, TurnTiming(origin=self.clock(), clock=self.clock))

    def _on_silence(self) -> None:
        if self._agent_speaking() or self._turns_active:
            return
        self._silence_strikes += 1
        if self._silence_strikes == 1:
            self._spawn(self._say_recorded(STILL_THERE, then_arm=True), "still-there")
        else:
            self._spawn(self._say_and_hang_up(GOODBYE_SILENT), "goodbye")

    def _on_time_limit(self) -> None:
        self._spawn(self._say_and_hang_up(GOODBYE_TIME_LIMIT), "time-limit")

    def _arm_silence(self) -> None:
        if self._turns_active or self._agent_speaking() or self._ending:
            return
        self._silence_deadline = self.clock() + self.config.silence_timeout
        self._timers_changed.set()

    def _disarm_silence(self) -> None:
        self._silence_deadline = None
        self._timers_changed.set()

    async def _watch_timers(self) -> None:
        limit = self._started + self.config.max_call_seconds
        while True:
            deadline = min(limit, self._silence_deadline or limit)
            self._timers_changed.clear()
            try:
                await asyncio.wait_for(self._timers_changed.wait(), max(0.0, deadline - self.clock()))
                continue
            except TimeoutError:
                pass
            now = self.clock()
            if now >= limit:
                self._events.put_nowait(TimeLimit())
                return
            if self._silence_deadline is not None and now >= self._silence_deadline:
                self._silence_deadline = None
                self._events.put_nowait(Silence())

    # ---- turns -------------------------------------------------------------------------

    async def _turn(self, text: str, timing: TurnTiming, preemption: Preemption | None = None) -> None:
        draft = preemption.draft if preemption is not None else None
        reply = self._utterance("reply", timing)
        reply.ahead = preemption.ahead if preemption is not None else None
        if reply.ahead is None:
            self.tts.prepare()
        filler = self._spawn(self._filler(timing), "filler")

        def on_text(delta: str) -> None:
            timing.mark("first_token")
            filler.cancel()
            reply.push_text(delta)

        result: VoiceTurnResult | None = None
        try:
            async with self._brain_lock:
                if draft is not None:
                    result = await draft.confirm(
                        text, on_text=on_text, on_done=reply.close_text, marks=timing.marks
                    )
                else:
                    result = await self.calls.turn(
                        self.call, text, on_text=on_text, on_done=reply.close_text, marks=timing.marks
                    )
            filler.cancel()
            reply.close_text()
            await reply.done.wait()
            if result.agent_message_id is not None:
                await self.calls.annotate(result.agent_message_id, marks=timing.marks, heard=reply.heard_text)
            for stage in STAGES:
                if stage in timing.marks:
                    TURN_SECONDS.labels(stage).observe(timing.marks[stage] / 1000)
        except asyncio.CancelledError:
            if draft is not None:
                await draft.discard()  # no-op once confirmed
            # The call ended mid-reply: keep what the caller heard.
            if result is not None and result.agent_message_id is not None and not reply.done.is_set():
                heard = reply.interrupt()
                await self.calls.annotate(result.agent_message_id, marks=timing.marks, heard=heard)
            raise
        finally:
            filler.cancel()
            self._drop_ahead(reply.ahead)  # not played (the reply said something else, or none)
            self._turns_active -= 1
        assert result is not None
        # Control effects survive barge-in; speech does not.
        if result.effect is Effect.transfer and result.transfer_to:
            await self._transfer(result.transfer_to)
        elif result.effect is Effect.end:
            await self._hang_up()
        else:
            self._arm_silence()

    async def _filler(self, timing: TurnTiming) -> None:
        await asyncio.sleep(self.config.filler_after)
        if "first_token" in timing.marks:
            return
        timing.mark("filler")
        filler = self._utterance("filler", None)
        filler.push_text(FILLER)
        filler.close_text()

    async def _transfer_on_request(self) -> None:
        """DTMF 0: hand off through the transfer tool (Transfer row + staff text), then dial."""
        self._turns_active += 1
        try:
            summary = "Caller pressed 0 to reach staff."
            if self._segments:
                summary += f' Last words: "{" ".join(self._segments)[:200]}"'
            async with self._brain_lock:
                result = await self.calls.call_tool(
                    self.call,
                    "transfer_to_staff",
                    {"reason": TransferReason.dtmf.value, "summary": summary},
                )
            await self._say_recorded(result.message)
        finally:
            self._turns_active -= 1
        staff = result.data.get("staff_phone")
        if result.effect is Effect.transfer and isinstance(staff, str):
            await self._transfer(staff)
        else:
            self._arm_silence()

    async def _transfer(self, to_phone: str) -> None:
        log.info("transferring call %s to %s", self.call.call_sid, to_phone)
        if not await self.link.transfer(to_phone=to_phone, caller_id=self.call.agent_phone):
            await self._say_recorded(TRANSFER_FAILED.format(staff=to_phone))
            return
        self.transferred_to = to_phone
        self._finish()

    async def _hang_up(self) -> None:
        await self.link.hang_up()
        self._finish()

    async def _say_and_hang_up(self, text: str) -> None:
        await self._say_recorded(text)
        await self._hang_up()

    def _finish(self) -> None:
        self._ended.set()
        self._events.put_nowait(CallerGone())

    # ---- speaking ----------------------------------------------------------------------

    def _utterance(self, kind: str, timing: TurnTiming | None) -> Utterance:
        utterance = Utterance(next(self._uids), kind, self.clock, timing)
        self._live.append(utterance)
        self._spawn(self._speak(utterance), f"speak-{kind}")
        return utterance

    async def _say_recorded(self, text: str, *, then_arm: bool = True) -> None:
        """Say a fixed text, record it in the transcript, and cut the record if interrupted."""
        message_id = await self.calls.say(self.call, text)
        self._spawn(self.calls.recall(self.call), "recall")  # read once, before the first draft needs it
        utterance = self._utterance("prompt", None)
        utterance.push_text(text)
        utterance.close_text()
        try:
            await utterance.done.wait()
        except asyncio.CancelledError:
            if not utterance.done.is_set():
                await self.calls.annotate(message_id, marks={}, heard=utterance.interrupt())
            raise
        if utterance.interrupted:
            await self.calls.annotate(message_id, marks={}, heard=utterance.heard_text)
        elif then_arm:
            self._arm_silence()

    async def _speak(self, utterance: Utterance) -> None:
        """Synthesize the utterance sentence by sentence into the pacer, a mark after each."""
        try:
            first = await utterance.sentences.get()
            if first is None or utterance.interrupted:
                return
            async with self._speak_lock:
                sentence: str | None = first
                index = 0
                while sentence is not None and not utterance.interrupted:
                    await self._speak_sentence(utterance, sentence, index)
                    index += 1
                    sentence = await utterance.sentences.get()
        finally:
            utterance.all_queued = True
            utterance.check_done()
            if utterance.done.is_set() and utterance in self._live:
                self._live.remove(utterance)
            else:
                self._spawn(self._forget_when_done(utterance), "forget")

    async def _forget_when_done(self, utterance: Utterance) -> None:
        await utterance.done.wait()
        if utterance in self._live:
            self._live.remove(utterance)

    async def _speak_sentence(self, utterance: Utterance, sentence: str, index: int) -> None:
        remainder = bytearray()
        frames = 0
        ahead = utterance.ahead.take(sentence) if utterance.ahead is not None and index == 0 else None
        chunks = ahead if ahead is not None else self.tts.synthesize(sentence)
        if ahead is not None and utterance.timing is not None and utterance.ahead is not None:
            origin = utterance.timing.origin
            drafted, started = utterance.ahead.ready or origin, utterance.ahead.started or origin
            utterance.timing.marks["draft_sentence"] = round((drafted - origin) * 1000, 1)
            utterance.timing.marks["speech_ahead"] = round((started - origin) * 1000, 1)
        try:
            async for chunk in chunks:
                if utterance.interrupted:
                    return
                if utterance.timing is not None:
                    utterance.timing.mark("first_tts_byte")
                ready = frames_of(chunk, remainder)
                if ready and frames == 0 and index == 0:
                    self.pacer.push_cue(lambda: self._first_audio(utterance))
                self.pacer.push_audio(ready)
                frames += len(ready)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        if utterance.interrupted:
            return
        if remainder:
            self.pacer.push_audio([pad_frame(bytes(remainder))])
            frames += 1
        self.tts_characters += len(sentence)
        name = f"u{utterance.uid}s{index}"
        utterance.sent.append(SentSentence(name, sentence, frames))
        self._by_mark[name] = utterance
        self.pacer.push_mark(name)

    def _first_audio(self, utterance: Utterance) -> None:
        utterance.audio_started_at = self.clock()
        if utterance.timing is not None:
            utterance.timing.mark("first_audio_sent")

    # ---- plumbing ----------------------------------------------------------------------

    async def _read_stt(self) -> None:
        assert self._stream is not None
        async for event in self._stream.events():
            self._events.put_nowait(SttIn(event))

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str = "say") -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"voice:{self.call.call_sid}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("voice task %s failed", task.get_name(), exc_info=task.exception())

    def _now(self) -> datetime:
        return self.calls.engine.clock()

    async def _shutdown(self) -> None:
        self._ending = True
        self._ended.set()
        self.pacer.clear()
        self._reset_words()
        if self._preemption is not None:
            preemption, self._preemption = self._preemption, None
            preemption.draft.cancel()
            self._drop_ahead(preemption.ahead)
            await preemption.draft.discard()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stt_seconds = 0.0
        if self._stream is not None:
            try:
                if self._stt_pending:  # the caller's last frames, held for a batch
                    await self._stream.send(bytes(self._stt_pending))
                stt_seconds = await self._stream.close()
            except Exception:  # a broken STT connection must not lose the call's record
                log.exception("closing STT failed on call %s", self.call.call_sid)
        await self.calls.end_call(
            self.call,
            CallUsage(
                stt_engine=self.stt.name,
                stt_seconds=stt_seconds,
                tts_engine=self.tts.name,
                tts_characters=self.tts_characters,
                call_seconds=self.clock() - self._started,
            ),
        )
