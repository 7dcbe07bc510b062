"""Deepgram live STT (`/v1/listen`, Nova-3) and Aura TTS (`/v1/speak` sockets), through `deepgram-sdk`.

`DeepgramSTT` survives a dropped socket without losing caller words: every byte sent is
kept until a final result covers it; on a drop the stream reconnects, re-sends the
audio after the last final's end, and shifts the new socket's timestamps back onto the
call's timeline (so `Transcript.start/end` are always seconds since the call began).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from deepgram.speak.v1.types import SpeakV1Text
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.legacy.client import WebSocketClientProtocol
from websockets.legacy.client import connect as websocket_connect

from agent.speech.base import SAMPLE_RATE, SpeechStarted, STTCapabilities, STTEvent, Transcript, UtteranceEnd

log = logging.getLogger(__name__)

REPLAY_CHUNK = 3200  # bytes per frame when re-sending buffered audio after a reconnect
MAX_BUFFER_SECONDS = 120.0  # never keep more unconfirmed audio than this


class SpeechProviderError(RuntimeError):
    """The provider failed for good (after its retries)."""


def deepgram_environment(base_url: str) -> DeepgramClientEnvironment:
    """Every Deepgram base URL pointed at `base_url` (http(s) for REST, ws(s) for sockets)."""
    http = base_url.rstrip("/")
    if http.startswith(("ws://", "wss://")):
        http = "http" + http.removeprefix("ws")
    ws = "ws" + http.removeprefix("http")
    return DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)


def deepgram_client(api_key: str, base_url: str | None) -> AsyncDeepgramClient:
    if base_url:
        return AsyncDeepgramClient(
            api_key=api_key, environment=deepgram_environment(base_url), transport_factory=_Socket
        )
    return AsyncDeepgramClient(api_key=api_key, transport_factory=_Socket)


_socket: ContextVar[_Socket] = ContextVar("deepgram_socket")


class _Socket:
    """The SDK's WebSocket transport, opened without permessage-deflate.

    The SDK's own transport offers per-message deflate; mu-law audio barely compresses,
    and deflating every 20 ms frame (and inflating every TTS chunk) cost the voice server
    several per cent of its CPU (benchmarks/RESULTS.md). The SDK calls the factory
    synchronously, so the handshake runs in a task from here; `opened()` waits for it
    inside the SDK's `connect()` block, where a refused handshake still becomes the SDK's
    `ApiError`. A block that never used its socket gets that error when it closes, so a
    refusal is never silent (the hook is process-wide: every client in the process uses it).
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._ws: WebSocketClientProtocol | None = None
        self._awaited = False  # someone waited for the handshake (and so saw how it ended)
        self._handshake = asyncio.ensure_future(
            websocket_connect(url, extra_headers=headers, compression=None)
        )
        _socket.set(self)

    async def _open(self) -> WebSocketClientProtocol:
        if self._ws is None:
            self._awaited = True
            self._ws = await self._handshake
        return self._ws

    async def send(self, data: str | bytes) -> None:
        await (self._ws or await self._open()).send(data)

    async def recv(self) -> str | bytes:
        return await (self._ws or await self._open()).recv()

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        async for message in self._ws or await self._open():
            yield message

    async def close(self) -> None:
        if self._ws is None:
            await asyncio.wait([self._handshake])  # rather than leave a half-open socket behind
            if self._handshake.cancelled():
                return
            if (error := self._handshake.exception()) is not None:
                if self._awaited:
                    return
                raise error
            self._ws = self._handshake.result()
        await self._ws.close()


async def opened() -> None:
    """Wait until the socket the SDK's `connect()` just made (in this task) is open."""
    await _socket.get()._open()


class DeepgramSTT:
    """Streaming Nova-3 recognition of 8 kHz mu-law phone audio."""

    name = "deepgram"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = "nova-3",
        endpointing_ms: int = 300,
        utterance_end_ms: int = 1000,
        keyterms: Sequence[str] = (),
        keepalive_interval: float = 3.5,
        max_reconnects: int = 5,
    ) -> None:
        self._client = deepgram_client(api_key, base_url)
        self.capabilities = STTCapabilities(
            interim_results=True,
            endpointing=True,
            vad_events=True,
            endpoint_after=max(endpointing_ms, utterance_end_ms) / 1000,
        )
        self._options: dict[str, Any] = {
            "model": model,
            "encoding": "mulaw",
            "sample_rate": SAMPLE_RATE,
            "channels": 1,
            "interim_results": True,
            "endpointing": endpointing_ms,
            "utterance_end_ms": utterance_end_ms,
            "vad_events": True,
            "smart_format": True,
            "punctuate": True,
        }
        if keyterms:
            self._options["keyterm"] = list(keyterms)
        self.keepalive_interval = keepalive_interval
        self.max_reconnects = max_reconnects

    async def open(self) -> DeepgramStream:
        stream = DeepgramStream(self._client, self._options, self.keepalive_interval, self.max_reconnects)
        await stream.start()
        return stream


class DeepgramStream:
    """One call's recognition, across as many sockets as drops require."""

    def __init__(
        self,
        client: AsyncDeepgramClient,
        options: dict[str, Any],
        keepalive_interval: float,
        max_reconnects: int,
    ) -> None:
        self._client = client
        self._options = options
        self._keepalive_interval = keepalive_interval
        self._max_reconnects = max_reconnects
        self._events: asyncio.Queue[STTEvent | BaseException | None] = asyncio.Queue()
        self._conn: Any = None  # the live AsyncV1SocketClient, once its replay is sent
        self._connected = asyncio.Event()
        self._first_connection: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        # Audio bookkeeping on the call's timeline, in bytes (= samples).
        self._sent = 0  # bytes the caller gave us
        self._buffer = bytearray()  # bytes [_buffer_start, _sent) not yet covered by a final
        self._buffer_start = 0
        self._socket_origin = 0  # call-timeline byte where the live socket's time 0 is
        self._socket_bytes = 0  # bytes sent on the live socket (replay included)
        self._replayed_until = 0.0  # call seconds: SpeechStarted before this may be a repeat
        self._speaking = False  # a SpeechStarted went out and no final ended it yet
        self._last_send = time.monotonic()
        self._closing = False
        self._billed = 0.0
        self.reconnects = 0
        self.close_timeout = 5.0

    async def start(self) -> None:
        self._runner = self._spawn(self._run())
        self._spawn(self._keepalive())
        await self._first_connection

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- STTStream -------------------------------------------------------------------

    async def send(self, ulaw: bytes) -> None:
        if not ulaw:
            return
        self._buffer += ulaw
        self._sent += len(ulaw)
        self._trim(max(self._buffer_start, self._sent - int(MAX_BUFFER_SECONDS * SAMPLE_RATE)))
        conn = self._conn
        if conn is None:
            return  # buffered; the reconnect replays it
        self._last_send = time.monotonic()
        with contextlib.suppress(ConnectionClosed):  # the reader notices and reconnects
            await conn.send_media(ulaw)
            self._socket_bytes += len(ulaw)

    async def finalize(self) -> None:
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(ConnectionClosed):
                await conn.send_finalize()

    async def events(self) -> AsyncIterator[STTEvent]:
        while (event := await self._events.get()) is not None:
            if isinstance(event, BaseException):
                raise event
            yield event

    async def close(self) -> float:
        """Send CloseStream, wait for the trailing results and Metadata; returns billed seconds."""
        timeout = self.close_timeout
        if not self._closing:
            self._closing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), timeout)
            conn = self._conn
            if conn is not None:
                with contextlib.suppress(ConnectionClosed):
                    await conn.send_close_stream()
        if self._runner is not None:  # the reader ends after Metadata and the close
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(self._runner, return_exceptions=True), timeout)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._socket_bytes:  # a socket that ended without Metadata: bill what it got
            self._billed += self._socket_bytes / SAMPLE_RATE
            self._socket_bytes = 0
        self._events.put_nowait(None)
        return round(self._billed, 3)

    # -- sockets ---------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    async with self._client.listen.v1.connect(**self._options) as conn:
                        await opened()
                        await self._replay(conn)
                        if not self._first_connection.done():
                            self._first_connection.set_result(None)
                        failures = 0
                        async for message in conn:
                            self._handle(message)
                        if self._closing:
                            return  # CloseStream answered: results, Metadata, close
                        log.warning("deepgram closed the socket; reconnecting")
                except (ConnectionClosed, InvalidHandshake, OSError, ApiError) as error:
                    if isinstance(error, ApiError) and error.status_code in (400, 401, 403):
                        raise SpeechProviderError(
                            f"deepgram refused the stream: {error.status_code}"
                        ) from error
                    if self._closing and self._conn is not None:
                        return
                    log.warning("deepgram socket failed (%s); reconnecting", type(error).__name__)
                finally:
                    self._disconnected()
                failures += 1
                if failures > self._max_reconnects:
                    raise SpeechProviderError(f"deepgram stream lost after {failures} attempts")
                self.reconnects += 1
                await asyncio.sleep(min(0.05 * 2**failures, 1.0))
        except SpeechProviderError as error:
            if not self._first_connection.done():
                self._first_connection.set_exception(error)
            else:
                self._events.put_nowait(error)

    async def _replay(self, conn: Any) -> None:
        """Start a socket at the oldest unconfirmed byte and re-send everything from there."""
        self._socket_origin = self._buffer_start
        self._socket_bytes = 0
        position = 0
        while position < len(self._buffer):  # audio sent meanwhile is appended and sent too
            chunk = bytes(self._buffer[position : position + REPLAY_CHUNK])
            await conn.send_media(chunk)
            position += len(chunk)
            self._socket_bytes += len(chunk)
        if position:
            log.info("deepgram: replayed %.2f s of unconfirmed audio", position / SAMPLE_RATE)
        self._replayed_until = (self._socket_origin + position) / SAMPLE_RATE
        self._last_send = time.monotonic()
        self._conn = conn  # no await since the loop ended: nothing slips between replay and live
        self._connected.set()

    def _disconnected(self) -> None:
        self._conn = None
        self._connected.clear()
        if self._socket_bytes:
            self._billed += self._socket_bytes / SAMPLE_RATE  # a dropped socket sends no Metadata
            self._socket_bytes = 0

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, self._keepalive_interval / 4))
            conn = self._conn
            if conn is None or self._closing:
                continue
            if time.monotonic() - self._last_send >= self._keepalive_interval:
                self._last_send = time.monotonic()
                with contextlib.suppress(ConnectionClosed):
                    await conn.send_keep_alive()

    # -- messages --------------------------------------------------------------------

    def _seconds(self, socket_seconds: float) -> float:
        return round(socket_seconds + self._socket_origin / SAMPLE_RATE, 3)

    def _handle(self, message: Any) -> None:
        kind = getattr(message, "type", None)
        if kind == "Results":
            self._results(message)
        elif kind == "SpeechStarted":
            at = self._seconds(message.timestamp)
            if self._speaking and at < self._replayed_until:
                return  # the replay re-detected speech we already announced
            self._speaking = True
            self._events.put_nowait(SpeechStarted(at=at))
        elif kind == "UtteranceEnd":
            self._speaking = False
            self._events.put_nowait(UtteranceEnd(last_word_end=self._seconds(message.last_word_end)))
        elif kind == "Metadata":
            self._billed += float(message.duration)
            self._socket_bytes = 0
        elif kind == "Error":
            log.warning("deepgram error %s: %s", message.variant, message.description)

    def _results(self, message: Any) -> None:
        alternatives = message.channel.alternatives
        alternative = alternatives[0] if alternatives else None
        text = alternative.transcript.strip() if alternative is not None else ""
        words = alternative.words if alternative is not None else []
        segment_start = self._seconds(message.start)
        segment_end = self._seconds(message.start + message.duration)
        is_final = bool(message.is_final)
        speech_final = bool(message.speech_final)
        if is_final:
            self._confirm(segment_end)
            if speech_final:
                self._speaking = False
        if not text and not (speech_final or message.from_finalize):
            return  # empty interims and empty mid-utterance finals say nothing
        self._events.put_nowait(
            Transcript(
                text=text,
                is_final=is_final,
                speech_final=speech_final,
                start=self._seconds(words[0].start) if words else segment_start,
                end=self._seconds(words[-1].end) if words else segment_end,
                confidence=float(alternative.confidence) if alternative is not None else 0.0,
            )
        )

    def _confirm(self, until_seconds: float) -> None:
        """A final covers the audio up to `until_seconds`: stop keeping it for replays."""
        self._trim(min(self._sent, round(until_seconds * SAMPLE_RATE)))

    def _trim(self, until_byte: int) -> None:
        drop = until_byte - self._buffer_start
        if drop > 0:
            del self._buffer[:drop]
            self._buffer_start = until_byte


FLUSHES_PER_MINUTE = 20  # Deepgram's allowance per `/v1/speak` socket (more earn a Warning)
CLEAR_SECONDS = 2.0  # an abandoned socket not `Cleared` within this is closed instead
PROMISE_SECONDS = 2.0  # how long a `prepare` keeps a socket wanted if no sentence comes


@dataclass(slots=True, eq=False)
class _SpeakSocket:
    """One open `/v1/speak` socket and what the pool needs to know about it."""

    stack: contextlib.AsyncExitStack
    conn: Any  # the SDK's AsyncV1SocketClient
    loop: asyncio.AbstractEventLoop  # a socket works only on the loop that opened it
    idle_since: float
    flushes: deque[float] = field(default_factory=lambda: deque(maxlen=FLUSHES_PER_MINUTE))

    def fresh(self, now: float, max_idle: float) -> bool:
        """Whether it has not idled longer than `max_idle` (so the server has not closed it)."""
        return now - self.idle_since <= max_idle

    def can_flush(self, now: float) -> bool:
        """Whether a flush now stays within the socket's allowance for the last minute."""
        return len(self.flushes) < FLUSHES_PER_MINUTE or now - self.flushes[0] > 60.0


class DeepgramTTS:
    """Aura voices over the `/v1/speak` WebSocket: raw 8 kHz mu-law chunks as they arrive.

    Sockets are pooled across calls: a sentence takes an idle socket (or opens one),
    sends `Speak` and `Flush`, and yields the binary audio up to `Flushed`; the socket
    then goes back to the pool. So no sentence waits on an HTTP request, and a busy
    server keeps a handful of warm sockets. A socket abandoned mid-sentence (barge-in,
    a discarded draft) is sent `Clear` in the background and pooled again once `Cleared`
    comes back; the audio still in flight before it is dropped, so none of it reaches
    the next sentence (no new handshake, TLS included, per abandoned sentence). Sockets
    idle longer than `max_idle` seconds, or that used their 20 flushes a minute, are not
    reused; a pooled socket that turns out to be closed is replaced once, before any
    audio.

    Between a caller's turns the pool's sockets often go stale (a turn takes longer than
    `max_idle`), so `prepare` (called when a model request starts, ~350 ms before its
    first sentence) opens a socket in the background when the fresh idle ones and those
    being opened are fewer than the sentences promised in the last `PROMISE_SECONDS`. The
    handshake then no longer sits between the first sentence and its audio. A sentence that
    comes while that socket is still opening waits for it rather than opening another.
    """

    name = "deepgram"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = "aura-2-thalia-en",
        max_idle: float = 8.0,
        max_pooled: int = 64,
    ) -> None:
        self._client = deepgram_client(api_key, base_url)
        self.model = model
        self.max_idle = max_idle
        self.max_pooled = max_pooled
        self._idle: deque[_SpeakSocket] = deque()
        self._closing: set[asyncio.Task[None]] = set()
        self._opening: set[asyncio.Task[None]] = set()
        self._clearing: set[asyncio.Task[None]] = set()
        self._promises: deque[float] = deque()  # when each `prepare` not yet met was made

    def prepare(self) -> None:
        """A sentence is coming soon: make sure a fresh socket will be waiting for it."""
        now, loop = time.monotonic(), asyncio.get_running_loop()
        promises = self._promises
        promises.append(now)
        while now - promises[0] > PROMISE_SECONDS:
            promises.popleft()
        fresh = sum(1 for s in self._idle if s.loop is loop and s.fresh(now, self.max_idle))
        opening = len(self._opening) + len(self._clearing)  # both will be idle soon
        if fresh + opening < len(promises) and len(self._idle) + opening < self.max_pooled:
            task = asyncio.create_task(self._open_spare(), name="deepgram:speak-prepare")
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    async def _open_spare(self) -> None:
        try:
            socket = await self._open()
        except (OSError, TimeoutError, InvalidHandshake, ApiError) as error:
            log.info("deepgram tts: a socket opened ahead failed (%s); sentences open their own", error)
            return
        self._idle.append(socket)

    async def synthesize(self, text: str) -> AsyncGenerator[bytes]:
        if not text.strip():
            return
        if self._promises:
            self._promises.popleft()
        socket = await self._take_or_wait()
        reused = socket is not None
        if socket is None:
            socket = await self._open()
        flushed = False
        try:
            while True:
                try:
                    await socket.conn.send_text(SpeakV1Text(type="Speak", text=text))
                    await socket.conn.send_flush()
                    socket.flushes.append(time.monotonic())
                    first = await self._next(socket)
                    break
                except ConnectionClosed:
                    if not reused:
                        raise
                    self._retire(socket)  # closed while pooled: once more on a new socket
                    socket, reused = await self._open(), False
            while first is not None:
                yield first
                first = await self._next(socket)
            flushed = True
        finally:
            if flushed:
                self._pool(socket)
            else:
                self._recycle(socket)

    @property
    def idle_sockets(self) -> int:
        """Sockets in the pool now, waiting for a sentence."""
        return len(self._idle)

    async def aclose(self) -> None:
        """Close every pooled socket (of this event loop)."""
        loop = asyncio.get_running_loop()
        pending = [task for task in (*self._opening, *self._clearing) if task.get_loop() is loop]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        while self._idle:
            socket = self._idle.popleft()
            if socket.loop is loop:
                self._retire(socket)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def _next(self, socket: _SpeakSocket) -> bytes | None:
        """The sentence's next audio chunk; None once `Flushed` says it is complete."""
        while True:
            message = await socket.conn.recv()
            if isinstance(message, bytes):
                if message:
                    return message
                continue
            kind = getattr(message, "type", None)  # the SDK parses Cleared as Flushed: go by type
            if kind == "Flushed":
                return None
            if kind == "Warning":
                log.warning("deepgram tts warning %s: %s", message.code, message.description)

    async def _take_or_wait(self) -> _SpeakSocket | None:
        """An idle socket; if none, one that `prepare` is still opening (its handshake started
        before this sentence came, so it is ready sooner than a new one would be)."""
        loop = asyncio.get_running_loop()
        socket = self._take()
        while socket is None:
            opening = [task for task in self._opening if task.get_loop() is loop]
            if not opening:
                return None
            await asyncio.wait(opening, return_when=asyncio.FIRST_COMPLETED)
            socket = self._take()
        return socket

    def _take(self) -> _SpeakSocket | None:
        """The oldest idle socket that is fresh and has a flush left (so flushes spread out)."""
        now, loop = time.monotonic(), asyncio.get_running_loop()
        found: _SpeakSocket | None = None
        spent: list[_SpeakSocket] = []
        while self._idle and found is None:
            socket = self._idle.popleft()
            if socket.loop is not loop:
                continue  # its loop is gone (a test's, or a restarted worker's): drop it
            if not socket.fresh(now, self.max_idle):
                self._retire(socket)
            elif socket.can_flush(now):
                found = socket
            else:
                spent.append(socket)
        self._idle.extend(spent)
        return found

    async def _open(self) -> _SpeakSocket:
        stack = contextlib.AsyncExitStack()
        try:
            conn = await stack.enter_async_context(
                self._client.speak.v1.connect(model=self.model, encoding="mulaw", sample_rate=SAMPLE_RATE)
            )
            await opened()
        except BaseException as error:
            # Out through the SDK's `connect()`, which turns a refused handshake into ApiError.
            await stack.__aexit__(type(error), error, error.__traceback__)
            raise
        return _SpeakSocket(stack, conn, asyncio.get_running_loop(), time.monotonic())

    def _recycle(self, socket: _SpeakSocket) -> None:
        task = asyncio.create_task(self._clear(socket), name="deepgram:speak-clear")
        self._clearing.add(task)
        task.add_done_callback(self._clearing.discard)

    async def _clear(self, socket: _SpeakSocket) -> None:
        """`Clear` an abandoned sentence, drop what was in flight up to `Cleared`, pool the socket."""
        cleared = False
        try:
            async with asyncio.timeout(CLEAR_SECONDS):
                await socket.conn.send_clear()
                while not cleared:
                    message = await socket.conn.recv()  # stale audio, or the sentence's Flushed
                    cleared = getattr(message, "type", None) == "Cleared"  # parsed as a Flushed: go by type
        except (ConnectionClosed, OSError, TimeoutError) as error:
            log.info(
                "deepgram tts: clearing an abandoned socket failed (%s); closing it", type(error).__name__
            )
        finally:
            if cleared:
                self._pool(socket)
            else:
                self._retire(socket)

    def _pool(self, socket: _SpeakSocket) -> None:
        """A socket done with its sentence: idle in the pool if there is room, else closed."""
        if len(self._idle) < self.max_pooled:
            socket.idle_since = time.monotonic()
            self._idle.append(socket)
        else:
            self._retire(socket)

    def _retire(self, socket: _SpeakSocket) -> None:
        task = asyncio.create_task(self._close(socket))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(socket: _SpeakSocket) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await socket.conn.send_close()
        with contextlib.suppress(Exception):
            await socket.stack.aclose()
