"""`hibachi call`: a simulated phone call to a running server, printed turn by turn.

The caller's lines are synthesised with the local TTS, sent over the exact Twilio
webhook + Media Streams protocol (`SimulatedCall`), and what the agent said back is
transcribed with the local STT from the audio the caller actually heard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.speech.local import LocalSTT, LocalTTS
from telephony.twilio.call_sim import SimulatedCall

# How long the agent must stay quiet before the caller speaks again.
AGENT_DONE_AFTER = 1.2


@dataclass(slots=True, frozen=True)
class CallTurn:
    caller: str
    agent: str
    latency_ms: float | None  # caller's speech end -> first agent audio, as the phone heard it


async def synthesize(tts: LocalTTS, text: str) -> bytes:
    return b"".join([chunk async for chunk in tts.synthesize(text)])


async def place_call(
    *,
    server_url: str,
    public_base_url: str,
    auth_token: str,
    account_sid: str,
    from_phone: str,
    to_phone: str,
    lines: Sequence[str],
    echo: Callable[[str], None],
) -> list[CallTurn]:
    """Call, wait for the greeting, say each line after the agent finishes, then hang up."""
    tts, stt = LocalTTS(), LocalSTT()
    audio = [await synthesize(tts, line) for line in lines]
    turns: list[CallTurn] = []
    async with SimulatedCall(
        server_url, public_base_url, auth_token, account_sid, from_phone, to_phone, timeout=60.0
    ) as call:
        await call.wait_for_agent_silence(quiet_for=AGENT_DONE_AFTER)
        echo(f"agent:  {await stt.transcribe(bytes(call.greeting_audio))}")
        for line, speech in zip(lines, audio, strict=True):
            if call.closed:
                break
            echo(f"caller: {line}")
            turn = await call.say(speech)
            await call.wait_for_agent_silence(quiet_for=AGENT_DONE_AFTER)
            heard = await stt.transcribe(bytes(turn.agent_audio)) if turn.agent_audio else ""
            latency = turn.latency * 1000 if turn.latency is not None else None
            shown = f"{latency:.0f} ms" if latency is not None else "no answer"
            echo(f"agent:  {heard}    [speech end -> first audio {shown}]")
            turns.append(CallTurn(line, heard, latency))
        if not call.closed:
            await call.hang_up()
    return turns
