"""`hibachi call`: a simulated phone call to a running server, printed turn by turn.

The caller's lines are synthesised with the local TTS, sent over the exact Twilio
webhook + Media Streams protocol (`SimulatedCall`), and what the agent said back is
transcribed with the local STT from the audio the caller actually heard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from agent.speech.local import LocalSTT, LocalTTS
from telephony.twilio.call_sim import SimulatedCall

# How long the agent must stay quiet before the caller speaks again.
AGENT_DONE_AFTER = 2.0  # long enough for the next sentence to be synthesised on a busy machine


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


# "preempted": a draft started on a stable interim; "draft_sentence": its first sentence was
# complete; "speech_ahead": that sentence went to the TTS (held while the caller still talked).
# All three are negative when that happened before the caller stopped speaking.
MARK_ORDER = (
    "preempted",
    "draft_sentence",
    "speech_ahead",
    "final_transcript",
    "first_token",
    "first_sentence",
    "first_tts_byte",
    "first_audio_sent",
)


async def latency_breakdown(*, server_url: str, api_key: str, phone: str) -> list[str]:
    """The server's own per-turn marks (ms after the caller's speech ended) for `phone`'s last call."""
    async with httpx.AsyncClient(base_url=server_url, headers={"Authorization": f"Bearer {api_key}"}) as api:
        listing = await api.get("/v1/conversations", params={"phone": phone, "channel": "voice", "limit": 1})
        listing.raise_for_status()
        items = listing.json()["items"]
        if not items:
            return []
        detail = (await api.get(f"/v1/conversations/{items[0]['id']}")).json()
    lines: list[str] = []
    for message in detail["messages"]:
        marks = message.get("marks") or {}
        if message["role"] == "agent" and "final_transcript" in marks:
            stages = ", ".join(f"{name} {marks[name]:.0f}" for name in MARK_ORDER if name in marks)
            lines.append(f"turn {len(lines) + 1}: {stages} (ms after the caller stopped speaking)")
    cost = detail["cost"]
    lines.append(
        f"call cost ${float(cost['usd']):.4f}: STT {cost['stt_seconds']:.1f} s, "
        f"TTS {cost['tts_characters']} chars, {cost['prompt_tokens'] + cost['completion_tokens']} tokens"
    )
    return lines
