"""The Twilio side of a phone call, over the real wire protocol: for `hibachi call`, tests,
evals and the voice benchmark.

`SimulatedCall` does what Twilio does for an inbound call (protocols.md 1.1-1.4, 3.5):

1. POSTs the signed `/twilio/voice` webhook and reads `<Connect><Stream>` from the TwiML;
2. opens the Media Streams WebSocket (signed handshake), sends `connected` and `start`
   (with the TwiML `<Parameter>`s), then one `media` message every 20 ms for the rest of
   the call: the caller's queued speech, else mu-law silence, paced against a deadline
   schedule so timing errors do not accumulate;
3. plays what the server sends on a playback clock (8 bytes per ms, from when audio
   arrives or when the previous audio ends): a `mark` is echoed when the audio queued
   before it has played; `clear` drops unplayed audio and echoes pending marks at once;
4. sends DTMF, and hangs up with `stop` followed by closing the socket.

All times are seconds since the stream started (`SimulatedCall.now()`), on
`time.monotonic()`: not the event loop's clock, which under uvloop is read once per loop
iteration and in whole milliseconds. Per caller utterance a `Turn` records when the speech ended
(its last non-silent frame was sent) and when the first non-silent agent audio arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, partial
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit
from xml.etree import ElementTree

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from telephony.audio import BYTES_PER_MS, FRAME_MS, SILENT_FRAME, is_silent, split_frames
from telephony.twilio import codec
from telephony.twilio.signature import SIGNATURE_HEADER, sign

FRAME_SECONDS = FRAME_MS / 1000
BYTES_PER_SECOND = BYTES_PER_MS * 1000
SPEECH_RMS = 100.0  # a frame at or above this RMS (PCM16 scale) is speech, not silence
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class CallSimError(Exception):
    """The server did not answer the call the way Twilio needs (webhook or stream)."""


class CallClosed(CallSimError):
    """The Media Streams socket is closed: the call is over."""


@dataclass(slots=True)
class AgentChunk:
    """One outbound `media` message: when it arrived and when it played on the caller's phone."""

    received_at: float
    payload: bytes
    starts_at: float
    dropped_bytes: int = 0  # cut by a `clear` before it played

    @property
    def heard(self) -> bytes:
        return self.payload[: len(self.payload) - self.dropped_bytes]

    @property
    def ends_at(self) -> float:
        return self.starts_at + (len(self.payload) - self.dropped_bytes) / BYTES_PER_SECOND


@dataclass(slots=True)
class MarkRecord:
    """A `mark` the server sent, and when (and why) the simulator echoed it."""

    name: str
    received_at: float
    due_at: float  # when playback reaches it
    echoed_at: float | None = None
    cleared: bool = False  # echoed because of a `clear`, not because playback reached it


@dataclass(slots=True)
class ClearRecord:
    """A `clear` the server sent: how much queued audio it dropped, which marks it flushed."""

    received_at: float
    dropped_bytes: int
    flushed_marks: tuple[str, ...]


@dataclass(slots=True)
class Turn:
    """One caller utterance and the agent audio that answered it.

    `agent_audio` collects what the server sent from the end of this utterance's speech
    until the next utterance's speech ended. `latency` is from the last non-silent
    caller frame sent to the first non-silent agent audio received.
    """

    index: int
    audio_bytes: int
    speech_started_at: float | None = None  # first frame sent
    speech_ended_at: float | None = None  # last non-silent frame sent
    sent_at: float | None = None  # last frame (trailing silence included) sent
    first_agent_audio_at: float | None = None
    agent_audio: bytearray = field(default_factory=bytearray)

    @property
    def latency(self) -> float | None:
        if self.first_agent_audio_at is None or self.speech_ended_at is None:
            return None
        return self.first_agent_audio_at - self.speech_ended_at


@dataclass(slots=True, frozen=True)
class PacingStats:
    """How evenly the caller's frames went out (all in milliseconds)."""

    frames: int
    mean_interval_ms: float
    min_interval_ms: float
    max_interval_ms: float
    max_late_ms: float  # worst delay past a frame's scheduled send time
    p99_late_ms: float


@dataclass(slots=True)
class _Frame:
    payload: bytes
    turn: Turn | None = None
    first: bool = False
    last_voiced: bool = False
    last: bool = False
    done: asyncio.Event | None = None


@dataclass(slots=True)
class StreamTarget:
    """What the TwiML told Twilio to do: the stream URL and its `<Parameter>`s."""

    url: str
    parameters: dict[str, str]


def voice_webhook_form(*, call_sid: str, account_sid: str, from_phone: str, to_phone: str) -> dict[str, str]:
    """The form Twilio posts to the voice URL for a ringing inbound call (protocols.md 1.1)."""
    return {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "From": from_phone,
        "To": to_phone,
        "Caller": from_phone,
        "Called": to_phone,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


def stream_target(twiml: str) -> StreamTarget:
    """The `<Connect><Stream>` of a voice TwiML answer; `CallSimError` if there is none."""
    try:
        root = ElementTree.fromstring(twiml)
    except ElementTree.ParseError as exc:
        raise CallSimError(f"the voice webhook did not answer TwiML: {exc}") from exc
    stream = root.find("./Connect/Stream")
    url = stream.get("url") if stream is not None else None
    if stream is None or not url:
        raise CallSimError(f"the voice webhook did not answer <Connect><Stream url=...>: {twiml[:300]}")
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.iter("Parameter")}
    return StreamTarget(url=url, parameters=parameters)


def _socket_url(server_url: str, public_stream_url: str) -> str:
    """Where to actually connect: the server's own address with the TwiML URL's path."""
    server = urlsplit(server_url)
    scheme = "wss" if server.scheme == "https" else "ws"
    return urlunsplit((scheme, server.netloc, urlsplit(public_stream_url).path, "", ""))


class SimulatedCall:
    """A phone call placed by a simulated caller through simulated Twilio.

    ```
    async with SimulatedCall(server_url, public_base_url, auth_token, account_sid,
                             from_phone, to_phone) as call:
        await call.wait_for_agent_silence()          # the greeting
        turn = await call.say(ulaw_audio)
        await call.wait_for_agent_silence()
        print(turn.latency, len(turn.agent_audio))
    ```

    `server_url` is where the server listens; `public_base_url` is its `PUBLIC_BASE_URL`
    (webhook signatures cover that URL). Leaving the block hangs up if the server has not
    closed the socket already.
    """

    def __init__(
        self,
        server_url: str,
        public_base_url: str,
        auth_token: str,
        account_sid: str,
        from_phone: str,
        to_phone: str,
        *,
        call_sid: str | None = None,
        stream_sid: str | None = None,
        extra_form: Mapping[str, str] | None = None,
        speech_rms: float = SPEECH_RMS,
        timeout: float = 15.0,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.public_base_url = public_base_url.rstrip("/")
        self.auth_token = auth_token
        self.account_sid = account_sid
        self.from_phone = from_phone
        self.to_phone = to_phone
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.stream_sid = stream_sid or "MZ" + uuid.uuid4().hex
        self.extra_form = dict(extra_form or {})
        self.speech_rms = speech_rms
        self.timeout = timeout

        self.twiml = ""
        self.target: StreamTarget | None = None
        self.turns: list[Turn] = []
        self.greeting_audio = bytearray()  # agent audio before the caller's first utterance ended
        self.first_agent_audio_at: float | None = None
        self.agent_chunks: list[AgentChunk] = []
        self.marks: list[MarkRecord] = []
        self.clears: list[ClearRecord] = []
        self.protocol_errors: list[str] = []
        self.closed_at: float | None = None
        self.closed_by_server = False

        self._ws: ClientConnection | None = None
        self._t0 = 0.0
        self._seq = 0
        self._chunk = 0
        self._send_lock = asyncio.Lock()
        self._outgoing: deque[_Frame] = deque()
        self._send_lateness: list[float] = []
        self._send_times: list[float] = []
        self._frames_sent = 0
        self._frame_sent = asyncio.Event()
        self._reply_turn: Turn | None = None
        self._play_end = 0.0
        self._last_agent_audio_at = 0.0
        self._agent_activity = asyncio.Event()
        self._pending_marks: deque[MarkRecord] = deque()
        self._marks_changed = asyncio.Event()
        self._closed = asyncio.Event()
        self._stopping = False
        self._pump_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.hang_up()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def now(self) -> float:
        """Seconds since the stream started."""
        return time.monotonic() - self._t0

    async def start(self) -> None:
        """Ring the server (voice webhook), open the media stream, send `connected` and `start`."""
        self.target = await self._post_webhook()
        signature = sign(self.target.url, {}, self.auth_token)
        try:
            self._ws = await connect(
                _socket_url(self.server_url, self.target.url),
                additional_headers={SIGNATURE_HEADER: signature},
                open_timeout=self.timeout,
                compression=None,
                max_size=2**22,
            )
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            raise CallSimError(f"could not open the media stream {self.target.url}: {exc}") from exc
        self._t0 = time.monotonic()
        await self._ws.send(codec.connected_message())
        parameters = self.target.parameters
        await self._send(
            partial(
                codec.start_message,
                stream_sid=self.stream_sid,
                call_sid=self.call_sid,
                account_sid=self.account_sid,
                custom_parameters=parameters,
            )
        )
        self._pump_task = asyncio.create_task(self._pump(), name=f"{self.call_sid}-pump")
        self._tasks |= {
            self._pump_task,
            asyncio.create_task(self._receive(), name=f"{self.call_sid}-receive"),
            asyncio.create_task(self._play_marks(), name=f"{self.call_sid}-marks"),
        }

    async def _post_webhook(self) -> StreamTarget:
        form = voice_webhook_form(
            call_sid=self.call_sid,
            account_sid=self.account_sid,
            from_phone=self.from_phone,
            to_phone=self.to_phone,
        )
        form.update(self.extra_form)
        signature = sign(self.public_base_url + "/twilio/voice", form, self.auth_token)
        async with httpx.AsyncClient(timeout=self.timeout, verify=_tls()) as client:
            response = await client.post(
                self.server_url + "/twilio/voice", data=form, headers={SIGNATURE_HEADER: signature}
            )
        if response.status_code != 200:
            raise CallSimError(f"the voice webhook answered {response.status_code}: {response.text[:300]}")
        self.twiml = response.text
        return stream_target(self.twiml)

    async def hang_up(self) -> None:
        """The caller hangs up: `stop`, then close the socket. A no-op once the call is over."""
        if self._ws is None:
            return
        if not self.closed:
            self._stopping = True
            if self._pump_task is not None:
                await asyncio.wait({self._pump_task})
            try:
                await self._send(
                    partial(
                        codec.stop_message,
                        stream_sid=self.stream_sid,
                        account_sid=self.account_sid,
                        call_sid=self.call_sid,
                    )
                )
                await self._ws.close()
            except ConnectionClosed:
                pass
        await self._shutdown()

    async def wait_closed(self) -> None:
        """Wait until the server closes the socket (goodbye or transfer); at most `timeout` s."""
        async with asyncio.timeout(self.timeout):
            await self._closed.wait()
        await self._shutdown()

    async def _shutdown(self) -> None:
        """Stop the simulator's tasks (the socket is closed); re-raise any task's crash."""
        errors: list[BaseException] = []
        for task in list(self._tasks):
            if not task.done():
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # a bug in a simulator task: report it, don't hide it
                errors.append(exc)
        self._tasks.clear()
        if errors:
            raise errors[0]

    # -- the caller's side ---------------------------------------------------------------

    def queue_speech(self, ulaw: bytes) -> tuple[Turn, asyncio.Event]:
        """Queue caller audio behind what is already queued; the event is set once it was all sent."""
        self._check_open()
        frames = split_frames(ulaw)
        turn = Turn(index=len(self.turns), audio_bytes=len(ulaw))
        self.turns.append(turn)
        done = asyncio.Event()
        if not frames:
            done.set()
            return turn, done
        voiced = [not is_silent(frame, self.speech_rms) for frame in frames]
        last_voiced = max((i for i, v in enumerate(voiced) if v), default=len(frames) - 1)
        for i, payload in enumerate(frames):
            self._outgoing.append(
                _Frame(
                    payload,
                    turn,
                    first=i == 0,
                    last_voiced=i == last_voiced,
                    last=i == len(frames) - 1,
                    done=done if i == len(frames) - 1 else None,
                )
            )
        return turn, done

    async def say(self, ulaw: bytes) -> Turn:
        """Speak mu-law audio (8 kHz) in real time; returns once its last frame was sent."""
        turn, done = self.queue_speech(ulaw)
        await self._until(done)
        return turn

    async def pause(self, seconds: float) -> None:
        """Let `seconds` of frames go by (silence, unless speech is queued)."""
        frames = round(seconds / FRAME_SECONDS)
        target = self._frames_sent + len(self._outgoing) + frames
        while self._frames_sent < target:
            self._check_open()
            self._frame_sent.clear()
            await self._until(self._frame_sent)

    async def press(self, digits: str) -> None:
        """Press keys: one `dtmf` message per digit (0-9, *, #, A-D)."""
        bad = set(digits) - DTMF_DIGITS
        if bad:
            raise ValueError(f"not DTMF digits: {''.join(sorted(bad))}")
        for digit in digits:
            self._check_open()
            await self._send(partial(codec.dtmf_message, stream_sid=self.stream_sid, digit=digit))

    async def _until(self, event: asyncio.Event) -> None:
        """Wait for `event`; `CallClosed` if the call ends first."""
        waiter = asyncio.ensure_future(event.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            closed.cancel()
        if not event.is_set():
            raise CallClosed("the call ended")

    def _check_open(self) -> None:
        if self._ws is None:
            raise CallSimError("the call has not started; use `async with` or `await start()`")
        if self.closed or self._stopping:
            raise CallClosed("the call ended")

    async def _send(self, build: Callable[..., str]) -> None:
        """Send one numbered message: `build(sequence_number=n)`, numbered in wire order."""
        assert self._ws is not None
        async with self._send_lock:
            self._seq += 1
            await self._ws.send(build(sequence_number=self._seq))

    async def _pump(self) -> None:
        """One `media` message every 20 ms, on a fixed schedule, for the whole call."""
        scheduled = self._t0 + FRAME_SECONDS
        while not self._stopping and not self.closed:
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stopping:
                return
            frame = self._outgoing.popleft() if self._outgoing else _Frame(SILENT_FRAME)
            self._chunk += 1
            chunk = self._chunk
            try:
                await self._send(
                    partial(
                        codec.media_event_message,
                        stream_sid=self.stream_sid,
                        chunk=chunk,
                        timestamp_ms=chunk * FRAME_MS,
                        payload=frame.payload,
                    )
                )
            except ConnectionClosed:
                return
            sent = time.monotonic()
            self._send_lateness.append(sent - scheduled)
            self._send_times.append(sent)
            self._sent(frame, sent - self._t0)
            scheduled += FRAME_SECONDS

    def _sent(self, frame: _Frame, at: float) -> None:
        turn = frame.turn
        if turn is not None:
            if frame.first:
                turn.speech_started_at = at
            if frame.last_voiced:
                turn.speech_ended_at = at
                self._reply_turn = turn
            if frame.last:
                turn.sent_at = at
        if frame.done is not None:
            frame.done.set()
        self._frames_sent += 1
        self._frame_sent.set()

    # -- the server's side ---------------------------------------------------------------

    async def _receive(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                self._on_message(raw)
        except ConnectionClosed:
            pass
        finally:
            self.closed_at = self.now()
            self.closed_by_server = not self._stopping
            self._closed.set()
            self._agent_activity.set()
            self._marks_changed.set()
            self._frame_sent.set()

    def _on_message(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self.protocol_errors.append("binary frame (Twilio rejects these: error 31950)")
            return
        try:
            message = codec.parse_outbound(raw)
        except codec.CodecError as exc:
            self.protocol_errors.append(str(exc))
            return
        if message.stream_sid != self.stream_sid:
            self.protocol_errors.append(f"streamSid {message.stream_sid!r} is not this stream's")
            return
        match message:
            case codec.OutMedia(payload=payload):
                self._on_media(payload)
            case codec.OutMark(name=name):
                self._on_mark(name)
            case codec.OutClear():
                self._on_clear()

    def _on_media(self, payload: bytes) -> None:
        now = self.now()
        starts = max(now, self._play_end)
        self._play_end = starts + len(payload) / BYTES_PER_SECOND
        self._last_agent_audio_at = now
        self.agent_chunks.append(AgentChunk(received_at=now, payload=payload, starts_at=starts))
        turn = self._reply_turn
        (turn.agent_audio if turn is not None else self.greeting_audio).extend(payload)
        turn_waiting = turn is not None and turn.first_agent_audio_at is None
        # Only the first voiced frame (of the call, of a reply) matters: skip measuring the rest.
        if (self.first_agent_audio_at is None or turn_waiting) and not is_silent(payload, self.speech_rms):
            if self.first_agent_audio_at is None:
                self.first_agent_audio_at = now
            if turn is not None and turn.first_agent_audio_at is None:
                turn.first_agent_audio_at = now
        self._agent_activity.set()

    def _on_mark(self, name: str) -> None:
        now = self.now()
        mark = MarkRecord(name=name, received_at=now, due_at=max(now, self._play_end))
        self.marks.append(mark)
        self._pending_marks.append(mark)
        self._marks_changed.set()

    def _on_clear(self) -> None:
        now = self.now()
        dropped = 0
        for chunk in reversed(self.agent_chunks):
            if chunk.ends_at <= now:
                break
            played = min(len(chunk.payload), max(0, int((now - chunk.starts_at) * BYTES_PER_SECOND)))
            chunk.dropped_bytes = len(chunk.payload) - played
            dropped += chunk.dropped_bytes
        self._play_end = min(self._play_end, now)
        flushed = tuple(mark.name for mark in self._pending_marks)
        for mark in self._pending_marks:
            mark.cleared = True
            mark.due_at = now
        self.clears.append(ClearRecord(received_at=now, dropped_bytes=dropped, flushed_marks=flushed))
        self._marks_changed.set()
        self._agent_activity.set()

    async def _play_marks(self) -> None:
        """Echo each pending mark when playback reaches it (at once after a `clear`)."""
        while not self.closed:
            if not self._pending_marks:
                self._marks_changed.clear()
                await self._marks_changed.wait()
                continue
            delay = self._pending_marks[0].due_at - self.now()
            if delay > 0:
                self._marks_changed.clear()
                try:
                    await asyncio.wait_for(self._marks_changed.wait(), delay)
                except TimeoutError:
                    pass
                continue
            mark = self._pending_marks.popleft()
            try:
                await self._send(
                    partial(codec.mark_event_message, stream_sid=self.stream_sid, name=mark.name)
                )
            except ConnectionClosed:
                return
            mark.echoed_at = self.now()

    # -- waiting and reading results -----------------------------------------------------

    async def wait_for_agent_silence(
        self, *, quiet_for: float = 0.8, require_audio: bool = True
    ) -> Turn | None:
        """Wait until the agent has finished talking: everything it sent has played and
        nothing new arrived for `quiet_for` seconds. With `require_audio`, first wait for
        it to say something after the caller's last utterance (or, before any, a greeting).
        Returns the turn being answered (None for the greeting); returns early if the call
        ends; `TimeoutError` after the call's `timeout` seconds (wrap it in
        `asyncio.timeout()` for a tighter bound).
        """
        turn = self._reply_turn
        async with asyncio.timeout(self.timeout):
            while require_audio and not self.closed and self._answered(turn) is None:
                self._agent_activity.clear()
                await self._agent_activity.wait()
            while not self.closed:
                remaining = max(self._play_end, self._last_agent_audio_at) + quiet_for - self.now()
                if remaining <= 0:
                    break
                # New audio only moves the end later: sleep to the end known now and look
                # again (waking per received frame cost more than the rest of the caller).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._closed.wait()
        return turn

    def _answered(self, turn: Turn | None) -> float | None:
        return self.first_agent_audio_at if turn is None else turn.first_agent_audio_at

    def agent_audio(self) -> bytes:
        """Every byte of audio the server sent, in order (including any later cleared)."""
        return b"".join(chunk.payload for chunk in self.agent_chunks)

    def heard_audio(self) -> bytes:
        """The agent audio the caller heard: what was sent, less what `clear` dropped."""
        return b"".join(chunk.heard for chunk in self.agent_chunks)

    def pacing(self) -> PacingStats:
        """How evenly the caller's media frames were sent."""
        if len(self._send_times) < 2:
            return PacingStats(len(self._send_times), 0.0, 0.0, 0.0, 0.0, 0.0)
        intervals = np.diff(np.array(self._send_times)) * 1000
        late = np.array(self._send_lateness) * 1000
        return PacingStats(
            frames=len(self._send_times),
            mean_interval_ms=float(intervals.mean()),
            min_interval_ms=float(intervals.min()),
            max_interval_ms=float(intervals.max()),
            max_late_ms=float(late.max()),
            p99_late_ms=float(np.percentile(late, 99)),
        )

    @property
    def frames_sent(self) -> int:
        return self._frames_sent


@cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every call's webhook request (building one takes ~20 ms of CPU)."""
    return httpx.create_ssl_context()
