"""SimulatedCall plays Twilio faithfully: signed webhook, paced media, marks, clear, DTMF, stop.

The server side is the real `/twilio/voice` router plus a test-only stand-in for the
`/twilio/media` route, served by uvicorn on this test's event loop so the test can
script it directly (send audio, marks, clears; read what arrived and when).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from hibachi.app import install_error_handlers
from hibachi.settings import Settings
from telephony.audio import SILENT_FRAME, is_silent, silence_ulaw, tone_ulaw
from telephony.twilio import codec, voice
from telephony.twilio.call_sim import CallClosed, CallSimError, SimulatedCall
from telephony.twilio.signature import SIGNATURE_HEADER

PUBLIC = "https://agent.test"
ACCOUNT = "AC" + "0" * 32
CALLER = "+14085550123"
AGENT = "+14085550199"
CALL_SID = "CA" + "ab" * 16
REPLY = tone_ulaw(600, 300)  # what the stand-in answers each utterance with
SPEECH = tone_ulaw(300, 400) + silence_ulaw(200)  # 400 ms of "speech", then a pause


@dataclass(slots=True)
class Received:
    at: float  # the event loop's clock
    event: codec.InboundEvent


class StandIn:
    """A test-only media route: records what arrives; answers utterances if `auto_reply`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.received: list[Received] = []
        self.arrived = asyncio.Condition()
        self.handshake_signature: str | None = None
        self.socket: WebSocket | None = None
        self.ended = asyncio.Event()
        self.auto_reply = False
        self.greeting: bytes | None = None
        self.stream_sid = ""
        self.reject = False

    async def endpoint(self, websocket: WebSocket) -> None:
        self.handshake_signature = websocket.headers.get(SIGNATURE_HEADER)
        if self.reject:
            await websocket.close(code=1008)  # before accept: the handshake is refused (403)
            return
        await websocket.accept()
        self.socket = websocket
        loop = asyncio.get_running_loop()
        in_speech, replies = False, 0
        try:
            while True:
                event = codec.parse(await websocket.receive_text())
                async with self.arrived:
                    self.received.append(Received(loop.time(), event))
                    self.arrived.notify_all()
                if isinstance(event, codec.Start):
                    self.stream_sid = event.stream_sid
                    if self.greeting is not None:
                        await self.send(codec.media_message(self.stream_sid, self.greeting))
                if isinstance(event, codec.Media) and self.auto_reply:
                    if not is_silent(event.payload):
                        in_speech = True
                    elif in_speech:  # the first silent frame after speech: answer at once
                        in_speech, replies = False, replies + 1
                        await self.send(codec.media_message(self.stream_sid, REPLY))
                        await self.send(codec.mark_message(self.stream_sid, f"reply-{replies}"))
        except WebSocketDisconnect:
            pass
        finally:
            self.ended.set()

    async def send(self, text: str) -> None:
        assert self.socket is not None
        await self.socket.send_text(text)

    async def close(self) -> None:
        assert self.socket is not None
        await self.socket.close()

    async def wait_for(self, kind: type[codec.InboundEvent], count: int = 1) -> list[Received]:
        """The first `count` events of `kind`, once they have arrived."""
        async with asyncio.timeout(10):
            async with self.arrived:
                await self.arrived.wait_for(lambda: len(self.of(kind)) >= count)
        return self.of(kind)[:count]

    def of(self, kind: type[codec.InboundEvent]) -> list[Received]:
        return [r for r in self.received if isinstance(r.event, kind)]


@dataclass(slots=True)
class Edge:
    url: str
    settings: Settings
    stand_in: StandIn

    def call(self, *, timeout: float = 15.0) -> SimulatedCall:
        return SimulatedCall(
            self.url,
            PUBLIC,
            self.settings.twilio_auth_token,
            ACCOUNT,
            CALLER,
            AGENT,
            call_sid=CALL_SID,
            timeout=timeout,
        )


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    """`/twilio/voice` (ours) + the stand-in `/twilio/media`, on a free port of this loop."""
    settings = Settings(_env_file=None, public_base_url=PUBLIC)
    stand_in = StandIn(settings)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(voice.router)
    app.dependency_overrides[voice.get_settings] = lambda: settings
    app.add_api_websocket_route(voice.MEDIA_PATH, stand_in.endpoint)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110  (uvicorn offers no startup event to await)
            await asyncio.sleep(0.005)
    yield Edge(f"http://127.0.0.1:{port}", settings, stand_in)
    server.should_exit = True
    await serving


def unnumbered(event: codec.InboundEvent) -> codec.InboundEvent:
    """The event without its sequence number (checked elsewhere), to compare the rest."""
    return event if isinstance(event, codec.Connected) else dataclasses.replace(event, sequence_number=0)


def media(received: list[Received]) -> list[tuple[float, codec.Media]]:
    return [(r.at, r.event) for r in received if isinstance(r.event, codec.Media)]


async def test_call_opens_a_signed_stream_with_the_twiml_parameters(edge: Edge) -> None:
    async with edge.call() as call:
        [start] = await edge.stand_in.wait_for(codec.Start)
        await edge.stand_in.wait_for(codec.Media)
    assert isinstance(edge.stand_in.received[0].event, codec.Connected)
    event = start.event
    assert isinstance(event, codec.Start)
    assert (event.call_sid, event.account_sid, event.stream_sid) == (CALL_SID, ACCOUNT, call.stream_sid)
    assert event.sequence_number == 1
    assert event.media_format == codec.MediaFormat("audio/x-mulaw", 8000, 1)
    assert call.target is not None
    assert call.target.url == "wss://agent.test/twilio/media"
    assert dict(event.custom_parameters) == call.target.parameters
    assert event.custom_parameters["from"] == CALLER
    assert voice.verify_stream_token(edge.settings, CALL_SID, event.custom_parameters["token"])
    assert voice.verify_stream_signature(edge.settings, edge.stand_in.handshake_signature)


async def test_caller_audio_is_paced_every_20_ms_with_string_numbers(edge: Edge) -> None:
    speech = tone_ulaw(300, 1000)  # 50 frames
    async with edge.call() as call:
        await call.pause(0.1)
        await call.say(speech)
    timeline = media(edge.stand_in.received)
    frames = [f for _, f in timeline]
    assert [f.chunk for f in frames] == list(range(1, len(frames) + 1))
    assert [f.timestamp_ms for f in frames] == [20 * f.chunk for f in frames]
    sequence = [
        r.event.sequence_number for r in edge.stand_in.received if not isinstance(r.event, codec.Connected)
    ]
    assert sequence == list(range(1, len(sequence) + 1))
    assert all(len(f.payload) == 160 for f in frames)
    assert frames[0].payload == SILENT_FRAME  # Twilio streams silence before anyone speaks
    spoken = [f.payload for f in frames if f.payload != SILENT_FRAME]
    assert b"".join(spoken) == speech

    stats = call.pacing()
    assert stats.frames == len(frames) >= 55
    assert stats.mean_interval_ms == pytest.approx(20.0, abs=1.0)
    assert stats.max_late_ms < 40  # deadline schedule: lateness never accumulates
    arrivals = [at for at, f in timeline if f.payload != SILENT_FRAME]
    assert arrivals[-1] - arrivals[0] == pytest.approx(0.98, abs=0.08)  # 49 intervals of 20 ms
    [turn] = call.turns
    assert turn.speech_started_at is not None
    assert turn.speech_ended_at is not None
    assert turn.speech_ended_at - turn.speech_started_at == pytest.approx(0.98, abs=0.08)


async def test_mark_is_echoed_once_the_audio_before_it_has_played(edge: Edge) -> None:
    async with edge.call() as call:
        await edge.stand_in.wait_for(codec.Start)
        sid = call.stream_sid
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        await edge.stand_in.send(codec.media_message(sid, tone_ulaw(500, 400)))
        await edge.stand_in.send(codec.mark_message(sid, "first"))
        await edge.stand_in.send(codec.media_message(sid, tone_ulaw(500, 200)))
        await edge.stand_in.send(codec.mark_message(sid, "second"))
        first, second = await edge.stand_in.wait_for(codec.Mark, 2)
    assert [unnumbered(first.event), unnumbered(second.event)] == [
        codec.Mark("first", sid),
        codec.Mark("second", sid),
    ]
    assert 0.4 <= first.at - sent_at < 0.55
    assert 0.6 <= second.at - sent_at < 0.75
    marks = call.marks
    assert [m.name for m in marks] == ["first", "second"]
    assert all(not m.cleared and m.echoed_at is not None and m.echoed_at >= m.due_at for m in marks)
    assert marks[1].due_at - marks[0].due_at == pytest.approx(0.2, abs=0.01)
    assert len(call.heard_audio()) == 4800


async def test_mark_after_played_audio_is_echoed_at_once(edge: Edge) -> None:
    async with edge.call() as call:
        await edge.stand_in.wait_for(codec.Start)
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        await edge.stand_in.send(codec.mark_message(call.stream_sid, "nothing-queued"))
        [echo] = await edge.stand_in.wait_for(codec.Mark)
    assert echo.at - sent_at < 0.1


async def test_clear_drops_unplayed_audio_and_echoes_pending_marks_at_once(edge: Edge) -> None:
    async with edge.call() as call:
        await edge.stand_in.wait_for(codec.Start)
        sid = call.stream_sid
        await edge.stand_in.send(codec.media_message(sid, tone_ulaw(500, 300)))
        await edge.stand_in.send(codec.mark_message(sid, "short"))
        await edge.stand_in.send(codec.media_message(sid, tone_ulaw(700, 2000)))
        await edge.stand_in.send(codec.mark_message(sid, "long"))
        [_short] = await edge.stand_in.wait_for(codec.Mark)  # playback reached 300 ms
        cleared_at = asyncio.get_running_loop().time()
        await edge.stand_in.send(codec.clear_message(sid))
        _, long = await edge.stand_in.wait_for(codec.Mark, 2)
    assert isinstance(long.event, codec.Mark)
    assert long.event.name == "long"
    assert long.at - cleared_at < 0.1  # not 2 s later
    [clear] = call.clears
    assert clear.flushed_marks == ("long",)
    assert clear.dropped_bytes == pytest.approx(16000, abs=1000)  # nearly all of the 2 s
    assert [m.cleared for m in call.marks] == [False, True]
    heard = call.heard_audio()
    assert len(heard) == 2400 + (16000 - clear.dropped_bytes)
    assert len(call.agent_audio()) == 2400 + 16000


async def test_turn_latency_runs_from_end_of_speech_to_first_agent_audio(edge: Edge) -> None:
    edge.stand_in.auto_reply = True
    edge.stand_in.greeting = tone_ulaw(450, 200)
    async with edge.call() as call:
        greeting = await call.wait_for_agent_silence(quiet_for=0.1)
        assert greeting is None
        assert bytes(call.greeting_audio) == edge.stand_in.greeting
        turn = await call.say(SPEECH)
        answered = await call.wait_for_agent_silence(quiet_for=0.2)
        finished = call.now()
    assert answered is turn
    assert turn.speech_ended_at is not None
    assert turn.sent_at is not None
    assert turn.sent_at - turn.speech_ended_at == pytest.approx(0.2, abs=0.03)  # trailing pause
    assert turn.latency is not None
    assert 0.0 < turn.latency < 0.15  # the stand-in answers on the first silent frame
    assert bytes(turn.agent_audio) == REPLY
    assert turn.first_agent_audio_at is not None
    assert finished >= turn.first_agent_audio_at + 0.3 + 0.2  # played out, then quiet
    [mark] = call.marks
    assert mark.name == "reply-1"
    assert mark.echoed_at is not None
    assert mark.echoed_at - turn.first_agent_audio_at >= 0.3


async def test_each_utterance_gets_its_own_turn(edge: Edge) -> None:
    edge.stand_in.auto_reply = True
    async with edge.call() as call:
        first = await call.say(SPEECH)
        await call.wait_for_agent_silence(quiet_for=0.1)
        second = await call.say(SPEECH)
        await call.wait_for_agent_silence(quiet_for=0.1)
    assert [t.index for t in call.turns] == [0, 1]
    assert bytes(first.agent_audio) == REPLY
    assert bytes(second.agent_audio) == REPLY
    assert first.latency is not None
    assert second.latency is not None
    assert [m.name for m in call.marks] == ["reply-1", "reply-2"]


async def test_dtmf_digits_arrive_in_order(edge: Edge) -> None:
    async with edge.call() as call:
        await edge.stand_in.wait_for(codec.Start)
        await call.press("12#")
        digits = await edge.stand_in.wait_for(codec.Dtmf, 3)
    assert [unnumbered(r.event) for r in digits] == [
        codec.Dtmf(d, "inbound_track", call.stream_sid) for d in "12#"
    ]
    with pytest.raises(ValueError, match="not DTMF"):
        await call.press("x")


async def test_hang_up_sends_stop_then_closes(edge: Edge) -> None:
    async with edge.call() as call:
        await edge.stand_in.wait_for(codec.Media)
    await edge.stand_in.ended.wait()
    last = edge.stand_in.received[-1].event
    assert isinstance(last, codec.Stop)
    assert last == codec.Stop(CALL_SID, ACCOUNT, call.stream_sid, last.sequence_number)
    assert call.closed
    assert not call.closed_by_server
    with pytest.raises(CallClosed):
        await call.say(SPEECH)


async def test_server_closing_the_stream_ends_the_call(edge: Edge) -> None:
    async with edge.call() as call:
        await edge.stand_in.wait_for(codec.Start)
        await edge.stand_in.close()
        await call.wait_closed()
        assert call.closed_by_server
        with pytest.raises(CallClosed):
            await call.say(SPEECH)
    assert not edge.stand_in.of(codec.Stop)  # nobody left to tell


async def test_say_is_interrupted_when_the_server_hangs_up(edge: Edge) -> None:
    async with edge.call() as call:
        await edge.stand_in.wait_for(codec.Start)
        saying = asyncio.create_task(call.say(tone_ulaw(300, 3000)))
        await edge.stand_in.wait_for(codec.Media, 3)
        await edge.stand_in.close()
        with pytest.raises(CallClosed):
            await saying


async def test_messages_twilio_would_reject_are_recorded(edge: Edge) -> None:
    async with edge.call() as call:
        await edge.stand_in.wait_for(codec.Start)
        assert edge.stand_in.socket is not None
        await edge.stand_in.socket.send_bytes(SILENT_FRAME)
        await edge.stand_in.send(codec.media_message("MZ-someone-else", SILENT_FRAME))
        await edge.stand_in.send('{"event": "start"}')
        await edge.stand_in.send(codec.mark_message(call.stream_sid, "after"))
        await edge.stand_in.wait_for(codec.Mark)  # processed in order, so the errors are in
    assert len(call.protocol_errors) == 3
    assert "binary" in call.protocol_errors[0]
    assert "streamSid" in call.protocol_errors[1]
    assert "not a message a server may send" in call.protocol_errors[2]
    assert call.agent_chunks == []


async def test_webhook_signed_for_the_wrong_public_url_is_refused(edge: Edge) -> None:
    call = SimulatedCall(
        edge.url, "https://elsewhere.test", edge.settings.twilio_auth_token, ACCOUNT, CALLER, AGENT
    )
    with pytest.raises(CallSimError, match="answered 403"):
        await call.start()


async def test_wait_for_agent_silence_times_out_when_the_agent_never_speaks(edge: Edge) -> None:
    async with edge.call(timeout=0.3) as call:
        with pytest.raises(TimeoutError):
            await call.wait_for_agent_silence()


async def test_refused_stream_handshake_is_a_clear_error(edge: Edge) -> None:
    edge.stand_in.reject = True
    with pytest.raises(CallSimError, match="could not open the media stream"):
        await edge.call().start()
