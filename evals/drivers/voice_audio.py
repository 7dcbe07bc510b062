"""The `voice-audio` channel: a real phone call through the full audio loop.

The caller's lines are synthesised with the local TTS (Piper, as `hibachi call` does)
and spoken over the exact Twilio webhook + Media Streams protocol (`SimulatedCall`);
the server hears them through its own STT, answers through its brain and TTS, and the
simulated phone plays the answer in real time. What the agent said is read back from
the database (the agent messages of this call's conversation), not re-transcribed:
the transcript there is exactly what was spoken (cut to what was heard on barge-in),
and the customer messages next to it are what the server's STT understood.

Latency per turn is what the phone measured: from the caller's last voiced frame to
the first non-silent agent audio (a filler counts: the caller heard something).

`serve_app` runs an ASGI app under uvicorn on 127.0.0.1 (a free port) in the current
event loop, so the app can share the caller's database pool and clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import uvicorn
from sqlalchemy import func, select
from starlette.types import ASGIApp

from agent.brain import Role
from agent.models import Conversation, Message, Transfer, TransferOutcome
from agent.speech.local import LocalTTS
from evals.drivers.base import AgentTurn
from evals.environment import EvalEnvironment, new_call_sid
from telephony.audio import is_silent
from telephony.twilio.call_cli import synthesize
from telephony.twilio.call_sim import CallClosed, SimulatedCall

# The agent is done with a turn once it has been quiet this long (its reply written, all played).
QUIET_FOR = 1.0
RECHECK_QUIET = 0.3  # shorter quiet spells while waiting for the database to catch up
POLL_SECONDS = 0.05
# How long to wait for any answer to one caller turn before calling it unanswered.
REPLY_TIMEOUT = 60.0
# How long `close()` waits for the server to finish the call's records.
RECORDS_TIMEOUT = 30.0
# Keys the agent ignores get no answer: how long to listen for one.
KEYS_ANSWER_WITHIN = 8.0
# After a live transfer is recorded, how long the server may take to dial and drop the stream.
TRANSFER_GRACE = 15.0


@asynccontextmanager
async def serve_app(app: ASGIApp, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve `app` (lifespan off: the caller owns its context) on a free port; yields its URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=0, lifespan="off", log_level="warning", timeout_graceful_shutdown=5
        )
    )
    serving = asyncio.create_task(server.serve(), name="evals-voice-server")
    try:
        while not server.started:
            if serving.done():
                await serving
                raise RuntimeError("uvicorn exited before it started serving")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await serving


@dataclass(slots=True, frozen=True)
class HeardLine:
    """One line of the call as the database has it: who, and what was recognised or said."""

    role: Role
    text: str


class VoiceAudioDriver:
    """One phone call from `caller_phone` to `agent_phone`, through the full audio loop.

    The call reaches `env.app` at `server_url`; without one, the driver serves the app
    itself (`serve_app`) from `open()` to `close()`. The environment's settings give
    `PUBLIC_BASE_URL` and the Twilio credentials (the webhook and the stream handshake
    are signed as Twilio signs them) and its sessions read the call's transcript. The
    server's speech engines, brain and `VoiceConfig` are whatever `env.ctx.extras` holds.

    After the call, `heard` holds the conversation as stored (the caller's lines as the
    server's STT understood them), `call_sid` names its conversation (`external_id`) and
    `duration_s` is how long the phone was connected.
    """

    def __init__(
        self,
        *,
        env: EvalEnvironment,
        caller_phone: str,
        agent_phone: str,
        server_url: str | None = None,
        tts: LocalTTS | None = None,
        quiet_for: float = QUIET_FOR,
        reply_timeout: float = REPLY_TIMEOUT,
    ) -> None:
        self.env = env
        self.sessions = env.ctx.sessions
        self.caller_phone = caller_phone
        self.agent_phone = agent_phone
        self.server_url = server_url
        self.tts = tts or LocalTTS()
        self.quiet_for = quiet_for
        self.reply_timeout = reply_timeout
        self.call_sid = new_call_sid()
        self.heard: list[HeardLine] = []
        self._call: SimulatedCall | None = None
        self._serving = AsyncExitStack()
        self._conversation_id: uuid.UUID | None = None
        self._seen = 0  # highest message id already read
        self._transfers = 0  # live transfers already seen

    @property
    def call(self) -> SimulatedCall:
        """The simulated phone (after `open()`)."""
        if self._call is None:
            raise RuntimeError("open() the call first")
        return self._call

    @property
    def ended(self) -> bool:
        """The server ended the call (hung up or transferred)."""
        return self.call.closed and self.call.closed_by_server

    @property
    def duration_s(self) -> float:
        """Seconds the phone was connected (so far, while the call goes on)."""
        if self._call is None:
            return 0.0
        return self._call.closed_at if self._call.closed_at is not None else self._call.now()

    async def open(self) -> AgentTurn:
        """Ring, wait for the greeting to finish playing, return it."""
        server_url = self.server_url
        if server_url is None:
            server_url = await self._serving.enter_async_context(serve_app(self.env.app))
        settings = self.env.ctx.settings
        self._call = SimulatedCall(
            server_url,
            settings.public_base_url,
            settings.twilio_auth_token,
            settings.twilio_account_sid,
            self.caller_phone,
            self.agent_phone,
            call_sid=self.call_sid,
            timeout=self.reply_timeout,
        )
        try:
            await self._call.start()
        except BaseException:
            await self._serving.aclose()
            raise
        return await self._answer(since=0.0)

    async def send(self, text: str) -> AgentTurn:
        """Say `text` in the caller's synthesised voice; the agent's reply once it went quiet."""
        if self.call.closed:
            return AgentTurn(ended=self.ended)
        speech = await synthesize(self.tts, text)
        try:
            turn = await self.call.say(speech)
        except CallClosed:  # the server ended the call while the caller was talking
            return await self._answer(since=self.call.now())
        spoken_at = turn.speech_ended_at if turn.speech_ended_at is not None else self.call.now()
        answer = await self._answer(since=spoken_at)
        answer.latency_s = turn.latency
        return answer

    async def press(self, digits: str) -> AgentTurn:
        """Press keypad keys (one DTMF message each); the agent's answer, if it has one."""
        if self.call.closed:
            return AgentTurn(ended=self.ended)
        pressed_at = self.call.now()
        try:
            await self.call.press(digits)
        except CallClosed:
            return await self._answer(since=pressed_at)
        answer = await self._answer(since=pressed_at, first_audio_within=KEYS_ANSWER_WITHIN)
        if answer.texts:
            first = await self._first_audio_after(pressed_at)
            answer.latency_s = first - pressed_at if first is not None else None
        return answer

    async def close(self) -> None:
        """Hang up (unless the server did), wait until the server closed the call's records,
        deliver the texts the call queued (deposit link, staff summary) to the provider fakes."""
        if self._call is None:
            return
        try:
            await self._call.hang_up()
            if await self._conversation() is not None:  # the stream got as far as starting the call
                async with asyncio.timeout(RECORDS_TIMEOUT):
                    while not await self._records_closed():  # noqa: ASYNC110  (a database row)
                        await asyncio.sleep(POLL_SECONDS)
                await self._read_new()
        finally:
            await self._serving.aclose()
        await self.env.deliver_outbox()

    # -- waiting for the agent ---------------------------------------------------------------

    async def _answer(self, *, since: float, first_audio_within: float | None = None) -> AgentTurn:
        """Wait until the agent answered what happened at `since` and went quiet; read the answer.

        Done means: some agent audio came after `since`, nothing has played for `quiet_for`,
        every caller line so far has its reply written, and, if a live transfer was just
        recorded, the server has closed the call. With no audio within `first_audio_within`
        (keys the agent ignores), or past `reply_timeout`, the turn is returned with whatever
        was recorded: an unanswered turn is the agent's failure, not the harness's.
        """
        try:
            async with asyncio.timeout(self.reply_timeout):
                async with asyncio.timeout(first_audio_within):
                    await self._first_audio_after(since)
                quiet = self.quiet_for
                while True:
                    await self.call.wait_for_agent_silence(quiet_for=quiet, require_audio=False)
                    if await self._turn_complete():
                        break
                    quiet = RECHECK_QUIET
                if not self.call.closed and await self._transferred():
                    async with asyncio.timeout(TRANSFER_GRACE):
                        await self.call.wait_closed()
                    while not await self._records_closed():  # noqa: ASYNC110  (a database row)
                        await asyncio.sleep(POLL_SECONDS)
        except TimeoutError:
            pass  # unanswered (or a transfer that never dialled): the texts say what was recorded
        texts = [line.text for line in await self._read_new() if line.role is Role.agent]
        return AgentTurn(texts=texts, ended=self.ended)

    async def _first_audio_after(self, since: float) -> float | None:
        """When the first non-silent agent audio after `since` arrived; None if the call ended first."""
        checked = 0
        while True:
            closed = self.call.closed  # read first: audio that came before the close still counts
            chunks = self.call.agent_chunks
            for chunk in chunks[checked:]:
                if chunk.received_at >= since and not is_silent(chunk.payload, self.call.speech_rms):
                    return chunk.received_at
            checked = len(chunks)
            if closed:
                return None
            await asyncio.sleep(POLL_SECONDS)

    async def _turn_complete(self) -> bool:
        """Every caller line so far has its reply written; once the call is over, its records too."""
        if self.call.closed:
            return await self._records_closed()
        conversation_id = await self._conversation()
        if conversation_id is None:
            return False
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Message.id, Message.role, Message.reply_to_id)
                    .where(Message.conversation_id == conversation_id)
                    .order_by(Message.id)
                )
            ).all()
        customers = {row.id for row in rows if row.role is Role.customer}
        answered = {row.reply_to_id for row in rows if row.role is Role.agent}
        has_agent = any(row.role is Role.agent for row in rows)
        return has_agent and customers <= answered

    # -- the database --------------------------------------------------------------------------

    async def _conversation(self) -> uuid.UUID | None:
        if self._conversation_id is None:
            async with self.sessions() as session:
                self._conversation_id = await session.scalar(
                    select(Conversation.id).where(Conversation.external_id == self.call_sid)
                )
        return self._conversation_id

    async def _transferred(self) -> bool:
        """A live hand-off (outcome `connected`) not seen before was recorded for this call."""
        conversation_id = await self._conversation()
        if conversation_id is None:
            return False
        async with self.sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(Transfer)
                .where(
                    Transfer.conversation_id == conversation_id,
                    Transfer.outcome == TransferOutcome.connected,
                )
            )
        new = (count or 0) > self._transfers
        self._transfers = count or 0
        return new

    async def _records_closed(self) -> bool:
        """The server ended the call's conversation (`end_call` wrote its end and cost)."""
        async with self.sessions() as session:
            ended_at = await session.scalar(
                select(Conversation.ended_at).where(Conversation.external_id == self.call_sid)
            )
        return ended_at is not None

    async def _read_new(self) -> list[HeardLine]:
        """The call's messages written since the last read, in order."""
        conversation_id = await self._conversation()
        if conversation_id is None:
            return []
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Message.id, Message.role, Message.text)
                    .where(Message.conversation_id == conversation_id, Message.id > self._seen)
                    .order_by(Message.id)
                )
            ).all()
        lines = [HeardLine(role=row.role, text=row.text) for row in rows]
        if rows:
            self._seen = rows[-1].id
        self.heard.extend(lines)
        return lines
