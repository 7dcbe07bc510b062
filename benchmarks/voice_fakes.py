"""The providers of the voice benchmark, in a process of their own: FakeDeepgram or FakeOpenAI.

`benchmarks.voice` starts one process per fake so that neither the load generator's
event loop nor the other fake's thread delays a provider's answer (those delays would
be counted as our own latency). Prints `{"url": ...}` on one line once serving, then
serves until its stdin closes.

    .venv/bin/python -m benchmarks.voice_fakes deepgram --stt-final-delay 0 --tts-first-byte 0.15
    .venv/bin/python -m benchmarks.voice_fakes openai --first-token 0.35
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from telephony.fakes.deepgram_server import FakeDeepgram, HeardUtterance
from telephony.fakes.openai_server import FakeOpenAI, Reply, Scripted, Stall

CHARS_PER_SECOND = 15.0  # the fake's speech rate; the load generator's caller audio matches it
# What each caller says, by utterance index on its STT connection (one connection per call).
CALLER_LINES = ("What's open on December 12?", "Thanks, that's all.")
# The model's one-sentence answers: to the first question, and to anything after it.
ANSWER = "We have noon, 3 and 6 pm open that day."
THANKS = "You're welcome, have a great day!"


def caller_line(heard: HeardUtterance) -> str:
    """The transcript of a detected utterance: the script's line for its index."""
    return CALLER_LINES[min(heard.index, len(CALLER_LINES) - 1)]


def model_reply(first_token: float) -> Any:
    """A responder answering every chat request with one short sentence after `first_token` s."""

    def respond(body: dict[str, Any]) -> Scripted:
        last = str(body["messages"][-1].get("content") or "")
        text = THANKS if "thanks" in last.lower() else ANSWER
        reply = Reply(text=text)
        return Stall(first_token, then=reply) if first_token > 0 else reply

    return respond


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("fake", choices=["deepgram", "openai"])
    parser.add_argument("--stt-final-delay", type=float, default=0.0)
    parser.add_argument("--tts-first-byte", type=float, default=0.15)
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
        deepgram.responder = caller_line
        with deepgram:
            print(json.dumps({"url": deepgram.base_url}), flush=True)
            sys.stdin.read()
    else:
        openai = FakeOpenAI()
        openai.responder = model_reply(args.first_token)
        with openai:
            print(json.dumps({"url": openai.base_url}), flush=True)
            sys.stdin.read()


if __name__ == "__main__":
    main()
