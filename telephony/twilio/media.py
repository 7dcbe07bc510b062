"""`/twilio/media`: the Media Streams WebSocket of one call, bridged to a `VoiceSession`.

Twilio connects here from `<Connect><Stream>` (see `telephony.twilio.voice`). The
first messages are `connected` and `start`; `start.customParameters` carry `from`,
`to`, `call_sid` and the per-call `token`, checked before anything else happens. Before
that, the handshake itself must carry Twilio's `X-Twilio-Signature` over our stream URL
(protocols.md 3.5, `verify_stream_signature`); without it the upgrade is refused (403)
and nothing is read. Then
caller audio, DTMF and playback marks flow in, and paced audio, marks and `clear` flow
out. `stop` or a dropped socket ends the call: the session cancels its work, keeps the
transcript and writes the call's cost. A malformed message closes only this socket
(1008, policy violation).

The app context provides `extras["engine"]` (the `ConversationEngine`),
`extras["stt"]` / `extras["tts"]` (speech providers) and optionally
`extras["voice_config"]` (a `VoiceConfig`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from base64 import b64encode

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from agent.engine import UnknownAgentNumber
from agent.speech.base import STT, TTS
from agent.voice.calls import VoiceCalls
from agent.voice.session import VoiceConfig, VoiceSession
from hibachi.context import AppContext
from hibachi.settings import Settings
from telephony.twilio import codec
from telephony.twilio.calls import CallControlError, hang_up, transfer_call
from telephony.twilio.signature import SIGNATURE_HEADER
from telephony.twilio.voice import MEDIA_PATH, verify_stream_signature, verify_stream_token

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
router = APIRouter(tags=["twilio"])


class TwilioLink:
    """Our side of one Media Streams socket: JSON text frames out, call updates by REST."""

    def __init__(self, websocket: WebSocket, settings: Settings, *, stream_sid: str, call_sid: str) -> None:
        self.websocket = websocket
        self.settings = settings
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self._send_lock = asyncio.Lock()
        self.closed = False
        # Outbound audio is the hot path (50 frames a second per call): build its JSON by
        # concatenation (the stream sid and base64 need no escaping) instead of json.dumps.
        sid = json.dumps(stream_sid)
        self._media_head = '{"event":"media","streamSid":' + sid + ',"media":{"payload":"'

    async def _send(self, text: str) -> None:
        if self.closed:
            return
        async with self._send_lock:
            try:
                await self.websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                # The socket went away (caller hung up); the read side ends the call.
                self.closed = True

    async def send_media(self, ulaw: bytes) -> None:
        await self._send(self._media_head + b64encode(ulaw).decode("ascii") + '"}}')

    async def send_mark(self, name: str) -> None:
        await self._send(codec.mark_message(self.stream_sid, name))

    async def send_clear(self) -> None:
        await self._send(codec.clear_message(self.stream_sid))

    async def transfer(self, *, to_phone: str, caller_id: str) -> bool:
        try:
            await transfer_call(self.settings, call_sid=self.call_sid, to_phone=to_phone, caller_id=caller_id)
        except CallControlError:
            log.exception("transfer of call %s failed", self.call_sid)
            return False
        return True

    async def hang_up(self) -> None:
        try:
            await hang_up(self.settings, call_sid=self.call_sid)
        except CallControlError:
            log.exception("hang-up of call %s failed", self.call_sid)


async def _close(websocket: WebSocket, code: int = 1000, reason: str = "") -> None:
    if websocket.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the caller left first
            await websocket.close(code=code, reason=reason)


async def _wait_for_start(websocket: WebSocket) -> codec.Start | None:
    """Read until `start` (after `connected`); None if the caller left first."""
    while True:
        event = codec.parse(await websocket.receive_text())
        if isinstance(event, codec.Start):
            return event
        if isinstance(event, codec.Stop):
            return None


async def _pump(websocket: WebSocket, session: VoiceSession) -> None:
    """Feed Twilio's messages to the session until `stop` or the socket closes."""
    while True:
        event = codec.parse(await websocket.receive_text())
        match event:
            case codec.Media(payload=payload):
                await session.feed_audio(payload)
            case codec.Mark(name=name):
                session.on_mark(name)
            case codec.Dtmf(digit=digit):
                session.on_dtmf(digit)
            case codec.Stop():
                return
            case codec.Connected() | codec.Start():
                log.warning("unexpected %s on a running stream", type(event).__name__)


@router.websocket(MEDIA_PATH)
async def media_stream(websocket: WebSocket) -> None:
    ctx: AppContext = websocket.app.state.ctx
    if not verify_stream_signature(ctx.settings, websocket.headers.get(SIGNATURE_HEADER)):
        log.warning("media stream refused: missing or bad %s", SIGNATURE_HEADER)
        await websocket.close(code=POLICY_VIOLATION)  # before accept: the upgrade gets a 403
        return
    await websocket.accept()
    try:
        start = await _wait_for_start(websocket)
    except codec.CodecError as exc:
        log.warning("malformed Media Streams message before start: %s", exc)
        await _close(websocket, POLICY_VIOLATION, "malformed message")
        return
    except WebSocketDisconnect:
        return
    if start is None:
        await _close(websocket)
        return
    params = start.custom_parameters
    if not verify_stream_token(ctx.settings, start.call_sid, params.get("token")):
        log.warning("media stream for %s refused: bad token", start.call_sid)
        await _close(websocket, POLICY_VIOLATION, "bad token")
        return
    calls = VoiceCalls(ctx.extras["engine"])
    try:
        call = await calls.start_call(
            call_sid=start.call_sid, customer_phone=params.get("from", ""), agent_phone=params.get("to", "")
        )
    except UnknownAgentNumber:
        log.warning("media stream for %s refused: %s is not ours", start.call_sid, params.get("to"))
        await _close(websocket, POLICY_VIOLATION, "unknown number")
        return
    stt: STT = ctx.extras["stt"]
    tts: TTS = ctx.extras["tts"]
    config: VoiceConfig = ctx.extras.get("voice_config") or VoiceConfig()
    link = TwilioLink(websocket, ctx.settings, stream_sid=start.stream_sid, call_sid=start.call_sid)
    session = VoiceSession(calls=calls, call=call, stt=stt, tts=tts, link=link, config=config)
    await session.open()
    runner = asyncio.create_task(session.run(), name=f"voice:{start.call_sid}")
    pump = asyncio.create_task(_pump(websocket, session), name=f"twilio-media:{start.call_sid}")
    ended = asyncio.create_task(session.ended.wait(), name=f"voice-ended:{start.call_sid}")
    policy_violation = False
    try:
        await asyncio.wait({pump, runner, ended}, return_when=asyncio.FIRST_COMPLETED)
        if pump.done() and not pump.cancelled():
            failure = pump.exception()
            if isinstance(failure, codec.CodecError):
                log.warning("malformed Media Streams message on %s: %s", start.call_sid, failure)
                policy_violation = True
            elif failure is not None and not isinstance(failure, WebSocketDisconnect):
                log.error("media stream %s failed", start.call_sid, exc_info=failure)
    finally:
        session.caller_gone()
        for task in (pump, ended):
            task.cancel()
        await asyncio.gather(pump, ended, return_exceptions=True)
        await runner  # ends the call: transcript kept, cost written
    if policy_violation:
        await _close(websocket, POLICY_VIOLATION, "malformed message")
    else:
        await _close(websocket)
