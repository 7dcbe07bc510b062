"""The providers of the voice benchmark, in a process of their own: FakeDeepgram or FakeOpenAI.

`benchmarks.voice` starts one process per fake so that neither the load generator's
event loop nor the other fake's thread delays a provider's answer (those delays would
be counted as our own latency). Prints `{"url": ...}` on one line once serving, then
serves until its stdin closes. For each `lag` line read from stdin it prints how late a
10 ms timer fired in the fake's event loop since the last one (`{"p50": ms, "p99": ms,
"max": ms}`): a busy fake answers late, and that lateness would be counted as ours.

    .venv/bin/python -m benchmarks.voice_fakes deepgram --stt-final-delay 0 --tts-first-byte 0.15
    .venv/bin/python -m benchmarks.voice_fakes openai --first-token 0.35
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from telephony.fakes.deepgram_server import FakeDeepgram, HeardUtterance
from telephony.fakes.openai_server import FakeOpenAI, Reply, Scripted, Stall

CHARS_PER_SECOND = 15.0  # the fake's speech rate; the load generator's caller audio matches it
# What each caller says, by utterance index on its STT connection (one connection per call).
CALLER_LINES = ("What's open on December 12?", "Thanks, that's all.")
# The longer calls of `benchmarks.voice --steady`.
LONG_CALL_LINES = (
    "What's open on December 12?",
    "And what about December 13?",
    "What about December 19th?",
    "Thanks, that's all.",
)
SCRIPTS = {"short": CALLER_LINES, "long": LONG_CALL_LINES}
# The model's one-sentence answers: to the first question, and to anything after it.
ANSWER = "We have noon, 3 and 6 pm open that day."
THANKS = "You're welcome, have a great day!"


def caller_lines(lines: tuple[str, ...]) -> Callable[[HeardUtterance], str]:
    """The transcript of each detected utterance: the script's line for its index."""

    def line(heard: HeardUtterance) -> str:
        return lines[min(heard.index, len(lines) - 1)]

    return line


def model_reply(first_token: float) -> Any:
    """A responder answering every chat request with one short sentence after `first_token` s."""

    def respond(body: dict[str, Any]) -> Scripted:
        last = str(body["messages"][-1].get("content") or "")
        text = THANKS if "thanks" in last.lower() else ANSWER
        reply = Reply(text=text)
        return Stall(first_token, then=reply) if first_token > 0 else reply

    return respond


class LagProbe:
    """ASGI pass-through that, from its first request on, samples its event loop's timer lateness."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._sample())
        await self.app(scope, receive, send)

    async def _sample(self) -> None:
        while True:
            due = time.monotonic() + 0.01  # not the loop's clock: uvloop's is cached, in whole ms
            await asyncio.sleep(0.01)
            self.samples.append((time.monotonic() - due) * 1000)

    def report(self) -> dict[str, float]:
        taken, self.samples = sorted(self.samples), []
        if not taken:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        p50, p99 = (taken[min(len(taken) - 1, int(q * len(taken)))] for q in (0.5, 0.99))
        return {"p50": round(p50, 2), "p99": round(p99, 2), "max": round(taken[-1], 2)}


def serve(fake: FakeDeepgram | FakeOpenAI) -> None:
    """Serve `fake`, answering `lag` lines on stdin, until stdin closes."""
    probe = LagProbe(fake.app)
    fake.app = probe
    with fake:
        gc.collect()
        gc.freeze()  # what start-up built stays out of the collector's full passes
        print(json.dumps({"url": fake.base_url}), flush=True)
        for line in sys.stdin:
            if line.strip() == "lag":
                print(json.dumps(probe.report()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("fake", choices=["deepgram", "openai"])
    parser.add_argument("--stt-final-delay", type=float, default=0.0)
    parser.add_argument("--tts-first-byte", type=float, default=0.15)
    parser.add_argument("--script", choices=sorted(SCRIPTS), default="short", help="what callers say")
    parser.add_argument("--chars-per-second", type=float, default=CHARS_PER_SECOND)
    parser.add_argument("--first-token", type=float, default=0.35)
    args = parser.parse_args()
    if args.fake == "deepgram":
        deepgram = FakeDeepgram(
            stt_final_delay=args.stt_final_delay,
            tts_first_byte_delay=args.tts_first_byte,
            chars_per_second=args.chars_per_second,
            idle_timeout=60.0,
        )
        deepgram.record = False  # as for the model's fake below
        deepgram.responder = caller_lines(SCRIPTS[args.script])
        serve(deepgram)
    else:
        openai = FakeOpenAI()
        openai.record = False  # nobody reads them here, and they would pile up for the collector
        openai.responder = model_reply(args.first_token)
        serve(openai)


if __name__ == "__main__":
    main()
