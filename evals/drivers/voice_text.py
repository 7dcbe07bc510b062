"""The `voice-text` channel: a phone call's conversation path without audio.

The caller's words go straight to `VoiceCalls.turn` (what the voice session calls once
STT has a final transcript), so replies are voice-style and the conversation is a
voice conversation with the greeting, per-turn records, transfers and cost, as on a
real call. Pressing 0 makes the same `transfer_to_staff` call the session makes for
DTMF 0. A live transfer (or the agent hanging up) ends the call.
"""

from __future__ import annotations

import time

from agent.engine import ConversationEngine
from agent.models import TransferReason
from agent.tools.base import Effect
from agent.voice.calls import CallUsage, VoiceCall, VoiceCalls
from agent.voice.text import greeting
from evals.drivers.base import AgentTurn
from evals.environment import EvalEnvironment, new_call_sid

PROVIDER = "voice-text"  # no telephony: the price table charges nothing for the line


class VoiceTextDriver:
    """One call from `caller_phone` to `agent_phone`, turn by turn, as text."""

    def __init__(self, *, env: EvalEnvironment, caller_phone: str, agent_phone: str) -> None:
        self.env = env
        self.caller_phone = caller_phone
        self.agent_phone = agent_phone
        engine: ConversationEngine = env.ctx.extras["engine"]
        self.calls = VoiceCalls(engine)
        self.call: VoiceCall | None = None
        self.spoken_chars = 0
        self.said: list[str] = []  # the caller's words so far (for the DTMF summary)
        self._started = 0.0

    async def open(self) -> AgentTurn:
        self._started = time.perf_counter()
        self.call = call = await self.calls.start_call(
            call_sid=new_call_sid(),
            customer_phone=self.caller_phone,
            agent_phone=self.agent_phone,
            provider=PROVIDER,
        )
        hello = greeting(call.location_name, call.timezone, self.calls.engine.clock())
        await self.calls.say(call, hello)
        self.spoken_chars += len(hello)
        return AgentTurn(texts=[hello])

    async def send(self, text: str) -> AgentTurn:
        call = self._live()
        self.said.append(text)
        started = time.perf_counter()
        first: list[float] = []

        def on_text(_delta: str) -> None:
            if not first:
                first.append(time.perf_counter())

        result = await self.calls.turn(call, text, on_text=on_text)
        self.spoken_chars += len(result.text)
        ended = result.effect is Effect.end or (result.effect is Effect.transfer and bool(result.transfer_to))
        await self.env.deliver_outbox()
        return AgentTurn(
            texts=[result.text] if result.text else [],
            latency_s=first[0] - started if first else None,
            ended=ended,
        )

    async def press(self, digits: str) -> AgentTurn:
        call = self._live()
        if "0" not in digits:
            return AgentTurn()  # only 0 means something on our line
        started = time.perf_counter()
        summary = "Caller pressed 0 to reach staff."
        if self.said:
            summary += f' Last words: "{" ".join(self.said)[:200]}"'
        result = await self.calls.call_tool(
            call, "transfer_to_staff", {"reason": TransferReason.dtmf.value, "summary": summary}
        )
        await self.calls.say(call, result.message)
        self.spoken_chars += len(result.message)
        await self.env.deliver_outbox()
        return AgentTurn(
            texts=[result.message],
            latency_s=time.perf_counter() - started,
            ended=result.effect is Effect.transfer,
        )

    async def close(self) -> None:
        if self.call is None:
            return
        usage = CallUsage(
            stt_engine="none",
            stt_seconds=0.0,
            tts_engine="none",
            tts_characters=self.spoken_chars,
            call_seconds=time.perf_counter() - self._started,
        )
        await self.calls.end_call(self.call, usage)
        await self.env.deliver_outbox()

    def _live(self) -> VoiceCall:
        if self.call is None:
            raise RuntimeError("open() the call first")
        return self.call
