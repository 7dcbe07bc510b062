"""A local Deepgram server: live STT (`/v1/listen` WebSocket) and Aura TTS (`/v1/speak`).

Speaks the wire protocol of protocols.md section 5, so the real `deepgram-sdk` works
against it through `DeepgramClientEnvironment(production="ws://127.0.0.1:P", base=...)`
(`fake.environment()` builds one).

It cannot recognise speech. It finds speech in the received audio by energy (20 ms
frames), and gives each detected utterance the next text of a script
(`script_transcripts("I'd like to book", "yes")`), else what `responder(utterance)`
returns, else "" (the responder is asked once per utterance, at its first interim, with
the audio heard so far, or at its final). While an utterance arrives it sends interim `Results` (is_final
false) revealing the words in proportion to the audio heard (at `chars_per_second`);
once `endpointing` ms of silence followed it, it waits `stt_final_delay` seconds and
sends the final (is_final and speech_final true), then `UtteranceEnd` after
`utterance_end_ms`. `SpeechStarted` comes with `vad_events=true`. `Finalize` flushes
the utterance in progress as a final with `from_finalize: true`; `CloseStream` flushes,
sends `Metadata` (billed `duration` = seconds of audio received) and closes; with no
audio or text message for `idle_timeout` seconds (10, like Deepgram) it sends an
`Error` and closes with 1011 `NET-0001`. `drop_listen_connections()` cuts every live
socket (close 1011) to test reconnects; an utterance cut before its final gives its
scripted text back to the front of the script.

`POST /v1/listen` (prerecorded) takes an audio body and answers the standard JSON
response: the next scripted text as `results.channels[0].alternatives[0].transcript`
and `metadata.duration` from the body (WAV header, else `encoding`/`sample_rate`,
else 8 kHz mu-law); requests go to `prerecorded_requests`.

`POST /v1/speak` streams a deterministic tone-and-gap signal as long as the text would
take to say (`chars_per_second`), after `tts_first_byte_delay`, in chunks; raw for
`container=none`, else with a WAV header. The `/v1/speak` WebSocket answers `Speak` /
`Flush` / `Clear` / `Close` the same way (each flush is recorded in `speak_requests`,
method "WS", and counted per socket in `speak_sockets_flushed`).

Traffic is recorded: `listen_connections` (query, headers, audio bytes and message
sizes, control messages, messages sent, close code) and `speak_requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import itertools
import json
import math
import secrets
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Self
from urllib.parse import parse_qs

import numpy as np
from deepgram.environment import DeepgramClientEnvironment
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from telephony.audio import pcm16_rms, pcm16_to_ulaw, ulaw_rms
from telephony.fakes.server import RecordedRequest, ServedFake

DEFAULT_API_KEY = "test-deepgram-key"
FRAME_SECONDS = 0.02
SPEECH_RMS = 300.0  # int16 RMS above which a 20 ms frame counts as speech (~ -40 dBFS)
BYTES_PER_SAMPLE = {"mulaw": 1, "alaw": 1, "linear16": 2, "linear32": 4}
MODEL_INFO = {"name": "general-nova-3", "version": "2025-01-01.0", "arch": "nova-3"}
MODEL_UUID = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
NET_0001 = (
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "This may indicate an internal issue with your connection. See https://dpgr.am/net0001"
)


@dataclass(slots=True, frozen=True)
class HeardUtterance:
    """What the responder is told about one detected utterance (times in stream seconds)."""

    connection: int
    index: int
    start: float
    duration: float
    audio: bytes


Responder = Callable[[HeardUtterance], str]


@dataclass(slots=True)
class ListenConnection:
    """One `/v1/listen` socket as the fake saw it."""

    index: int
    query: dict[str, list[str]]
    headers: dict[str, str]
    audio_bytes: int = 0
    audio_messages: list[int] = field(default_factory=list)  # each binary message's size
    bytes_per_second: int = 8000
    controls: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    dropped: bool = False

    @property
    def audio_seconds(self) -> float:
        return self.audio_bytes / self.bytes_per_second

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def messages(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == kind]


class FakeDeepgram(ServedFake):
    """Deepgram's live STT and Aura TTS, scripted for tests, benchmarks and evals.

    Knobs (plain attributes, change them any time): `stt_final_delay` (s from the
    endpoint to the final), `tts_first_byte_delay` (s before TTS audio), `interim_every`
    (stream s between interims), `chars_per_second` (speech rate of scripts and TTS),
    `idle_timeout`, `tts_chunk_bytes`, `responder`. A long-lived fake (the voice
    benchmark's) sets `record = False`: it then keeps no messages sent, audio message
    sizes or syntheses (counts and sizes in bytes still add up), which would otherwise pile
    up for its garbage collector and stall its event loop (the finals it sends with it).
    """

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_API_KEY,
        stt_final_delay: float = 0.3,
        tts_first_byte_delay: float = 0.2,
        interim_every: float = 0.5,
        chars_per_second: float = 12.0,
        idle_timeout: float = 10.0,
        tts_chunk_bytes: int = 1600,
    ) -> None:
        # api_key=None accepts any key (but still requires the header).
        self.api_key = api_key
        self.stt_final_delay = stt_final_delay
        self.tts_first_byte_delay = tts_first_byte_delay
        self.interim_every = interim_every
        self.chars_per_second = chars_per_second
        self.idle_timeout = idle_timeout
        self.tts_chunk_bytes = tts_chunk_bytes
        self.responder: Responder | None = None
        self.record = True
        self.listen_connections: list[ListenConnection] = []
        self.speak_requests: list[RecordedRequest] = []  # REST requests and socket flushes
        self._speak_sockets_opened = 0
        self._speak_live: dict[int, tuple[asyncio.AbstractEventLoop, WebSocket]] = {}
        self.speak_sockets_flushed: dict[int, int] = {}  # `/v1/speak` socket number -> flushes
        self.prerecorded_requests: list[RecordedRequest] = []
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._live: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
        self.app = Starlette(
            routes=[
                WebSocketRoute("/v1/listen", self._listen),
                Route("/v1/listen", self._listen_rest, methods=["POST"]),
                Route("/v1/speak", self._speak_rest, methods=["POST"]),
                WebSocketRoute("/v1/speak", self._speak_socket),
            ]
        )

    # -- test API ---------------------------------------------------------------------

    def environment(self) -> DeepgramClientEnvironment:
        """The SDK environment pointing every Deepgram base URL at this server."""
        http = self.base_url
        ws = "ws" + http.removeprefix("http")
        return DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)

    def script_transcripts(self, *texts: str) -> Self:
        """Queue the texts of the next utterances heard (on any connection), in order."""
        with self._lock:
            self._script.extend(texts)
        return self

    @property
    def pending_transcripts(self) -> int:
        with self._lock:
            return len(self._script)

    def speak_sockets_open(self) -> int:
        """How many `/v1/speak` sockets are open now."""
        with self._lock:
            return len(self._speak_live)

    def drop_speak_sockets(self) -> int:
        """Close every open `/v1/speak` socket from the server side (1011); returns how many."""
        with self._lock:
            live = list(self._speak_live.values())
        for loop, websocket in live:
            asyncio.run_coroutine_threadsafe(websocket.close(1011), loop)
        return len(live)

    def drop_listen_connections(self) -> int:
        """Cut every live `/v1/listen` socket now (close 1011); returns how many."""
        with self._lock:
            live = list(self._live.values())
        for loop, event in live:
            loop.call_soon_threadsafe(event.set)
        return len(live)

    def reset(self) -> None:
        """Forget recorded traffic, the script and the responder; record again."""
        with self._lock:
            self.listen_connections.clear()
            self.speak_requests.clear()
            self.speak_sockets_flushed.clear()
            self.prerecorded_requests.clear()
            self._script.clear()
            self.responder = None
            self.record = True

    # -- script ------------------------------------------------------------------------

    def _take_text(self) -> str | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _give_back(self, text: str) -> None:
        with self._lock:
            self._script.appendleft(text)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or not key.strip():
            return False
        return self.api_key is None or key.strip() == self.api_key

    # -- /v1/listen ----------------------------------------------------------------------

    async def _listen(self, websocket: WebSocket) -> None:
        headers = dict(websocket.headers)
        query = parse_qs(websocket.url.query, keep_blank_values=True)
        with self._lock:
            conn = ListenConnection(len(self.listen_connections), query, headers)
            self.listen_connections.append(conn)
        if not self._authorized(headers):
            conn.close_code = 401
            await _deny(websocket, 401, "INVALID_AUTH", "Invalid credentials.")
            return
        encoding = conn.param("encoding")
        if encoding is not None and (encoding not in BYTES_PER_SAMPLE or conn.param("sample_rate") is None):
            conn.close_code = 400
            await _deny(websocket, 400, "Bad Request", "encoding needs a known value and sample_rate")
            return
        rate = int(conn.param("sample_rate") or 8000)
        conn.bytes_per_second = (
            rate * BYTES_PER_SAMPLE.get(encoding or "mulaw", 1) * int(conn.param("channels") or 1)
        )
        await websocket.accept()
        drop = asyncio.Event()
        with self._lock:
            self._live[conn.index] = (asyncio.get_running_loop(), drop)
        session = _ListenSession(self, conn, websocket)
        try:
            await session.run(drop)
        finally:
            with self._lock:
                self._live.pop(conn.index, None)
            session.give_back_unfinished()

    async def _listen_rest(self, request: Request) -> Response:
        audio = await request.body()
        query = {k: list(v) for k, v in parse_qs(request.url.query, keep_blank_values=True).items()}
        record = RecordedRequest(request.method, request.url.path, dict(request.headers), form=query)
        with self._lock:
            self.prerecorded_requests.append(record)
        request_id = str(uuid.uuid4())
        if not self._authorized(dict(request.headers)):
            response: Response = _rest_error(401, "INVALID_AUTH", "Invalid credentials.", request_id)
        elif not audio:
            response = _rest_error(400, "Bad Request", "Request body is empty.", request_id)
        else:
            text = self._take_text() or ""
            duration = _prerecorded_seconds(audio, query)
            words = _timed_words(text.split(), 0.0, duration)
            response = JSONResponse(
                {
                    "metadata": {
                        "transaction_key": "deprecated",
                        "request_id": request_id,
                        "sha256": hashlib.sha256(audio).hexdigest(),
                        "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                        "duration": round(duration, 3),
                        "channels": 1,
                        "models": [MODEL_UUID],
                        "model_info": {MODEL_UUID: MODEL_INFO},
                    },
                    "results": {
                        "channels": [
                            {
                                "alternatives": [
                                    {"transcript": text, "confidence": 0.99 if words else 0.0, "words": words}
                                ]
                            }
                        ]
                    },
                }
            )
        record.status = response.status_code
        return response

    # -- /v1/speak -----------------------------------------------------------------------

    async def _speak_rest(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        record = RecordedRequest(request.method, request.url.path, dict(request.headers), json=body)
        record.form = {k: list(v) for k, v in parse_qs(request.url.query).items()}
        if self.record:
            with self._lock:
                self.speak_requests.append(record)
        response = self._speak_response(request, body)
        record.status = response.status_code
        return response

    def _speak_response(self, request: Request, body: Any) -> Response:
        request_id = str(uuid.uuid4())
        if not self._authorized(dict(request.headers)):
            return _rest_error(401, "INVALID_AUTH", "Invalid credentials.", request_id)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return _rest_error(400, "Bad Request", "Text must be a non-empty string.", request_id)
        params = request.query_params
        encoding = params.get("encoding", "linear16")
        if encoding not in ("mulaw", "linear16"):
            return _rest_error(
                400,
                "UNSUPPORTED_ENCODING",
                f"This fake only speaks mulaw/linear16, not {encoding}.",
                request_id,
            )
        rate = int(params.get("sample_rate") or (8000 if encoding == "mulaw" else 24000))
        container = params.get("container", "wav")
        received = time.monotonic()
        audio = _speech_like(text, rate=rate, encoding=encoding, chars_per_second=self.chars_per_second)
        if container == "wav":
            audio = _wav_header(len(audio), rate=rate, encoding=encoding) + audio
        model = params.get("model", "aura-asteria-en")
        headers = {
            "dg-request-id": request_id,
            "dg-model-name": model,
            "dg-model-uuid": MODEL_UUID,
            "dg-char-count": str(len(text)),
        }
        media = "audio/wav" if container == "wav" else "application/octet-stream"
        return StreamingResponse(self._tts_chunks(audio, received), media_type=media, headers=headers)

    async def _tts_chunks(self, audio: bytes, received: float) -> AsyncIterator[bytes]:
        """`audio` in chunks, the first one `tts_first_byte_delay` s after the request arrived.

        Making the audio counts toward that delay, so the fake's own CPU time never adds to
        the latency it is configured to have.
        """
        await asyncio.sleep(max(0.0, self.tts_first_byte_delay - (time.monotonic() - received)))
        step = max(1, self.tts_chunk_bytes)
        for start in range(0, len(audio), step):
            yield audio[start : start + step]
            await asyncio.sleep(0)

    async def _speak_socket(self, websocket: WebSocket) -> None:
        if not self._authorized(dict(websocket.headers)):
            await _deny(websocket, 401, "INVALID_AUTH", "Invalid credentials.")
            return
        params = websocket.query_params
        encoding = params.get("encoding", "linear16")
        rate = int(params.get("sample_rate") or (8000 if encoding == "mulaw" else 24000))
        await websocket.accept()
        await websocket.send_text(
            json.dumps(
                {
                    "type": "Metadata",
                    "request_id": str(uuid.uuid4()),
                    "model_name": params.get("model", "aura-asteria-en"),
                    "model_version": "2025-01-01.0",
                    "model_uuid": MODEL_UUID,
                }
            )
        )
        with self._lock:
            socket_id = self._speak_sockets_opened = self._speak_sockets_opened + 1
            self._speak_live[socket_id] = (asyncio.get_running_loop(), websocket)
        try:
            await self._speak_loop(websocket, socket_id, encoding, rate)
        finally:
            with self._lock:
                self._speak_live.pop(socket_id, None)

    async def _speak_loop(self, websocket: WebSocket, socket_id: int, encoding: str, rate: int) -> None:
        """Speak, Flush, Clear, Close. Flushed text is synthesised in order by a task of its
        own, so a `Clear` stops it at once (queued text and unsent audio dropped, then
        `Cleared`), as Deepgram does; `Close` lets what was flushed finish first."""
        buffer: list[str] = []
        flushes: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        sequence = itertools.count()
        sending = asyncio.Lock()  # one message at a time from the reader and the speaker

        async def send(message: str | bytes) -> None:
            async with sending:
                if isinstance(message, bytes):
                    await websocket.send_bytes(message)
                else:
                    await websocket.send_text(message)

        async def speak() -> None:
            while (flush := await flushes.get()) is not None:
                text, received = flush
                if text.strip():
                    audio = _speech_like(
                        text, rate=rate, encoding=encoding, chars_per_second=self.chars_per_second
                    )
                    async for chunk in self._tts_chunks(audio, received):
                        await send(chunk)
                await send(json.dumps({"type": "Flushed", "sequence_id": next(sequence)}))

        speaker = asyncio.create_task(speak())
        try:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # RuntimeError: dropped by us
                while True:
                    message = json.loads(await websocket.receive_text())
                    kind = message.get("type")
                    if kind == "Speak":
                        buffer.append(str(message.get("text", "")))
                    elif kind == "Flush":
                        text = "".join(buffer)
                        buffer.clear()
                        self._record_flush(websocket, socket_id, text)
                        flushes.put_nowait((text, time.monotonic()))
                    elif kind == "Clear":
                        buffer.clear()
                        speaker.cancel()
                        await asyncio.gather(speaker, return_exceptions=True)
                        while not flushes.empty():
                            flushes.get_nowait()
                        speaker = asyncio.create_task(speak())
                        await send(json.dumps({"type": "Cleared", "sequence_id": next(sequence)}))
                    elif kind == "Close":
                        flushes.put_nowait(None)
                        await asyncio.gather(speaker, return_exceptions=True)
                        await websocket.close(1000)
                        return
        finally:
            speaker.cancel()
            await asyncio.gather(speaker, return_exceptions=True)

    def _record_flush(self, websocket: WebSocket, socket_id: int, text: str) -> None:
        """One synthesis, recorded like a REST request."""
        with self._lock:
            self.speak_sockets_flushed[socket_id] = self.speak_sockets_flushed.get(socket_id, 0) + 1
            if not self.record:
                return
            self.speak_requests.append(
                RecordedRequest(
                    "WS",
                    websocket.url.path,
                    dict(websocket.headers),
                    json={"text": text},
                    form={k: list(v) for k, v in parse_qs(websocket.url.query).items()},
                )
            )


@dataclass(slots=True)
class _Utterance:
    index: int
    start: float  # stream seconds of the first speech frame
    last_voice: float  # stream seconds where the last speech frame ended
    text: str | None = None
    scripted: bool = False
    audio: bytearray = field(default_factory=bytearray)
    last_interim: float = 0.0


class _ListenSession:
    """The state of one `/v1/listen` connection: VAD, scheduling, messages out."""

    def __init__(self, fake: FakeDeepgram, conn: ListenConnection, websocket: WebSocket) -> None:
        self.fake, self.conn, self.ws = fake, conn, websocket
        self.request_id = str(uuid.uuid4())
        self.interim = conn.param("interim_results") == "true"
        self.vad_events = conn.param("vad_events") == "true"
        endpointing = conn.param("endpointing", "10")
        self.endpointing = None if endpointing == "false" else float(endpointing or 10) / 1000
        utterance_end = conn.param("utterance_end_ms")
        self.utterance_end = float(utterance_end) / 1000 if utterance_end and self.interim else None
        self.mulaw = (conn.param("encoding") or "mulaw") == "mulaw"
        self.bytes_per_frame = max(1, round(conn.bytes_per_second * FRAME_SECONDS))
        self.pending = bytearray()
        self.position = 0.0  # stream seconds of audio analysed
        self.cursor = 0.0  # stream seconds covered by finals so far
        self.utterance: _Utterance | None = None
        self.utterances = 0
        self.awaiting_utterance_end: float | None = None  # last word end of the last final
        self.outbox: asyncio.Queue[tuple[float, dict[str, Any]] | None] = asyncio.Queue()
        self.unsent_finals: list[tuple[dict[str, Any], str]] = []  # scripted finals not yet sent
        self.last_due = 0.0
        self.last_activity = time.monotonic()
        self.sha = hashlib.sha256()

    def give_back_unfinished(self) -> None:
        """Scripted texts whose final never reached the client go back to the script's front."""
        texts = [text for _, text in self.unsent_finals]
        if self.utterance is not None and self.utterance.scripted and self.utterance.text is not None:
            texts.append(self.utterance.text)
        for text in reversed(texts):
            self.fake._give_back(text)
        self.unsent_finals.clear()
        self.utterance = None

    async def run(self, drop: asyncio.Event) -> None:
        sender = asyncio.create_task(self._send_loop())
        receiver = asyncio.create_task(self._receive_loop())
        watchdog = asyncio.create_task(self._idle_watchdog())
        dropper = asyncio.create_task(drop.wait())
        tasks = {sender, receiver, watchdog, dropper}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if dropper in done:
                self.conn.dropped = True
                await self._close(1011, "fake: connection dropped")
            elif watchdog in done:
                await self._emit_now(
                    {"type": "Error", "variant": "NET-0001", "description": NET_0001, "message": NET_0001}
                )
                await self._close(1011, "NET-0001")
            elif receiver in done and receiver.exception() is None and receiver.result():
                # CloseStream: flush everything queued, then Metadata, then close.
                self.outbox.put_nowait(None)
                await sender
                await self._emit_now(self._metadata())
                await self._close(1000, "")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _close(self, code: int, reason: str) -> None:
        self.conn.close_code = code
        with contextlib.suppress(Exception):  # the client may already be gone
            await self.ws.close(code, reason)

    async def _receive_loop(self) -> bool:
        """Reads until CloseStream (True) or the client goes away (False)."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.conn.close_code = message.get("code", 1000)
                return False
            self.last_activity = time.monotonic()
            data = message.get("bytes")
            if data is not None:
                if not data:  # legacy close: an empty binary frame
                    self.conn.controls.append("CloseStream")
                    self._flush(from_finalize=False)
                    return True
                self._audio(data)
                continue
            try:
                control = json.loads(message.get("text") or "")
                kind = str(control.get("type"))
            except (json.JSONDecodeError, AttributeError):
                kind = "?"
            self.conn.controls.append(kind)
            if kind == "Finalize":
                self._flush(from_finalize=True)
            elif kind == "CloseStream":
                self._flush(from_finalize=False)
                return True

    async def _idle_watchdog(self) -> None:
        while True:
            idle = time.monotonic() - self.last_activity
            if idle >= self.fake.idle_timeout:
                return
            await asyncio.sleep(min(0.25, self.fake.idle_timeout - idle))

    async def _send_loop(self) -> None:
        while (item := await self.outbox.get()) is not None:
            due, message = item
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._emit_now(message)

    async def _emit_now(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(message))
        if self.fake.record:
            self.conn.sent.append(message)
        self.unsent_finals = [(m, t) for m, t in self.unsent_finals if m is not message]

    def _queue(self, message: dict[str, Any], *, delay: float = 0.0) -> None:
        # Messages leave in order: a later message never overtakes a delayed final.
        due = max(time.monotonic() + delay, self.last_due)
        self.last_due = due
        self.outbox.put_nowait((due, message))

    # -- audio analysis --------------------------------------------------------------

    def _audio(self, data: bytes) -> None:
        self.conn.audio_bytes += len(data)
        if self.fake.record:
            self.conn.audio_messages.append(len(data))
        self.sha.update(data)
        self.pending += data
        step = self.bytes_per_frame
        while len(self.pending) >= step:
            frame = bytes(self.pending[:step])
            del self.pending[:step]
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        start = self.position
        self.position += FRAME_SECONDS
        voiced = _frame_rms(frame, mulaw=self.mulaw) >= SPEECH_RMS
        utterance = self.utterance
        if voiced:
            if utterance is None:
                utterance = self._start_utterance(start)
            utterance.last_voice = self.position
            utterance.audio += frame
            if self.interim and self.position - utterance.last_interim >= self.fake.interim_every - 1e-9:
                utterance.last_interim = self.position
                self._interim(utterance)
            return
        if utterance is not None:
            utterance.audio += frame
            silence = self.position - utterance.last_voice
            if self.endpointing is not None and silence >= self.endpointing - 1e-9:
                self._final(utterance, speech_final=True, from_finalize=False)
            elif self.endpointing is None and silence >= 0.3:
                self._final(utterance, speech_final=False, from_finalize=False)
        elif self.awaiting_utterance_end is not None and self.utterance_end is not None:
            if self.position - self.awaiting_utterance_end >= self.utterance_end - 1e-9:
                self._queue(
                    {
                        "type": "UtteranceEnd",
                        "channel": [0, 1],
                        "last_word_end": round(self.awaiting_utterance_end, 3),
                    }
                )
                self.awaiting_utterance_end = None

    def _start_utterance(self, start: float) -> _Utterance:
        utterance = _Utterance(index=self.utterances, start=start, last_voice=start, last_interim=start)
        self.utterances += 1
        text = self.fake._take_text()
        if text is not None:
            utterance.text, utterance.scripted = text, True
        self.utterance = utterance
        self.awaiting_utterance_end = None
        if self.vad_events:
            self._queue({"type": "SpeechStarted", "channel": [0], "timestamp": round(start, 3)})
        return utterance

    def _text_of(self, utterance: _Utterance) -> str:
        if utterance.text is None:
            responder = self.fake.responder
            heard = HeardUtterance(
                connection=self.conn.index,
                index=utterance.index,
                start=utterance.start,
                duration=utterance.last_voice - utterance.start,
                audio=bytes(utterance.audio),
            )
            utterance.text = responder(heard) if responder is not None else ""
        return utterance.text

    def _interim(self, utterance: _Utterance) -> None:
        words = self._text_of(utterance).split()
        if not words:
            return
        spoken = utterance.last_voice - utterance.start
        expected = max(0.3, sum(len(w) + 1 for w in words) / self.fake.chars_per_second)
        shown = min(len(words), math.ceil(len(words) * min(1.0, spoken / expected)))
        timed = _timed_words(words[:shown], utterance.start, utterance.last_voice)
        self._queue(
            self._results(timed, end=self.position, is_final=False, speech_final=False, from_finalize=False)
        )

    def _final(self, utterance: _Utterance, *, speech_final: bool, from_finalize: bool) -> None:
        words = self._text_of(utterance).split()
        timed = _timed_words(words, utterance.start, utterance.last_voice)
        message = self._results(
            timed, end=self.position, is_final=True, speech_final=speech_final, from_finalize=from_finalize
        )
        self._queue(message, delay=self.fake.stt_final_delay)
        if utterance.scripted and utterance.text is not None:
            self.unsent_finals.append((message, utterance.text))
        self.cursor = self.position
        self.utterance = None
        self.awaiting_utterance_end = utterance.last_voice if words else None

    def _flush(self, *, from_finalize: bool) -> None:
        if self.pending:  # a partial frame still counts as audio
            frame = bytes(self.pending) + bytes([0xFF]) * (self.bytes_per_frame - len(self.pending))
            self.pending.clear()
            self._frame(frame)
        if self.utterance is not None:
            self._final(self.utterance, speech_final=False, from_finalize=from_finalize)
        elif from_finalize:
            self._queue(
                self._results([], end=self.position, is_final=True, speech_final=False, from_finalize=True)
            )
            self.cursor = self.position

    def _results(
        self,
        words: list[dict[str, Any]],
        *,
        end: float,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
    ) -> dict[str, Any]:
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(end - self.cursor, 3),
            "start": round(self.cursor, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(w["punctuated_word"] for w in words),
                        "confidence": 0.99 if words else 0.0,
                        "words": words,
                    }
                ]
            },
            "metadata": {"request_id": self.request_id, "model_info": MODEL_INFO, "model_uuid": MODEL_UUID},
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": self.sha.hexdigest(),
            "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "duration": round(self.conn.audio_seconds, 3),
            "channels": 1,
            "models": [MODEL_UUID],
            "model_info": {MODEL_UUID: MODEL_INFO},
        }


def _timed_words(words: list[str], start: float, end: float) -> list[dict[str, Any]]:
    """Spread words over [start, end] in proportion to their length."""
    total = sum(len(w) + 1 for w in words) or 1
    span = max(end - start, 0.0)
    timed, at = [], start
    for word in words:
        length = span * (len(word) + 1) / total
        bare = word.strip(".,!?;:\"'").lower() or word.lower()
        timed.append(
            {
                "word": bare,
                "start": round(at, 3),
                "end": round(at + length, 3),
                "confidence": 0.99,
                "punctuated_word": word,
            }
        )
        at += length
    return timed


def _prerecorded_seconds(audio: bytes, query: dict[str, list[str]]) -> float:
    """Seconds of audio in a prerecorded body: from a WAV header, else the query's format."""
    if audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and len(audio) >= 44:
        offset, byte_rate, data = 12, 0, 0
        while offset + 8 <= len(audio):
            chunk, size = audio[offset : offset + 4], struct.unpack("<I", audio[offset + 4 : offset + 8])[0]
            if chunk == b"fmt ":
                byte_rate = struct.unpack("<I", audio[offset + 16 : offset + 20])[0]
            elif chunk == b"data":
                data = min(size, len(audio) - offset - 8)
                break
            offset += 8 + size + (size & 1)
        return data / byte_rate if byte_rate else 0.0
    encoding = (query.get("encoding") or ["mulaw"])[0]
    rate = int((query.get("sample_rate") or ["8000"])[0])
    channels = int((query.get("channels") or ["1"])[0])
    return len(audio) / (rate * BYTES_PER_SAMPLE.get(encoding, 1) * channels)


def _frame_rms(frame: bytes, *, mulaw: bool) -> float:
    return ulaw_rms(frame) if mulaw else pcm16_rms(frame[: len(frame) // 2 * 2])


@lru_cache(maxsize=256)
def _speech_like(text: str, *, rate: int, encoding: str, chars_per_second: float) -> bytes:
    """A deterministic stand-in for speech: one tone burst per word, short gaps between."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    pitch = 140.0 + seed % 80
    pieces: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    for word in text.split():
        seconds = (len(word) + 1) / chars_per_second
        voiced = max(1, int(rate * seconds * 0.8))
        t = np.arange(voiced) / rate
        envelope = np.sin(np.pi * np.arange(voiced) / voiced) ** 0.5
        tone = envelope * (np.sin(2 * np.pi * pitch * t) + 0.5 * np.sin(2 * np.pi * 2.7 * pitch * t))
        pieces.append(0.4 * tone)
        pieces.append(np.zeros(max(1, int(rate * seconds * 0.2))))
    signal = np.concatenate(pieces) if pieces else np.zeros(rate // 10)
    pcm = np.clip(signal * 32767, -32768, 32767).astype(np.int16)
    pcm_bytes = pcm.astype("<i2").tobytes()
    return pcm16_to_ulaw(pcm_bytes) if encoding == "mulaw" else pcm_bytes


def _wav_header(size: int, *, rate: int, encoding: str) -> bytes:
    width, fmt = (1, 7) if encoding == "mulaw" else (2, 1)
    out = io.BytesIO()
    out.write(b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE")
    out.write(b"fmt " + struct.pack("<IHHIIHH", 16, fmt, 1, rate, rate * width, width, width * 8))
    out.write(b"data" + struct.pack("<I", size))
    return out.getvalue()


def _rest_error(status: int, code: str, message: str, request_id: str) -> JSONResponse:
    return JSONResponse({"err_code": code, "err_msg": message, "request_id": request_id}, status_code=status)


async def _deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    """Fail the upgrade with an HTTP status, as Deepgram does for bad keys or parameters."""
    try:
        await websocket.send_denial_response(_rest_error(status, code, message, secrets.token_hex(8)))
    except RuntimeError:  # server without the denial-response extension
        await websocket.close(1008)
