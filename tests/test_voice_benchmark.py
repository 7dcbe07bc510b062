"""benchmarks.voice: which turns its steady mode times, how many calls were up, the cost per turn."""

from __future__ import annotations

from benchmarks.voice import CallRecord, CallResult, Steady, concurrency, cost_line
from benchmarks.voice_fakes import LONG_CALL_LINES, caller_lines
from telephony.fakes.deepgram_server import HeardUtterance


def test_steady_mode_times_the_seconds_after_the_randomly_phased_start() -> None:
    steady = Steady(seconds=60.0, phase=30.0)

    assert steady.window(100.0) == (130.0, 190.0)


def test_concurrency_counts_only_the_part_of_each_call_inside_the_window() -> None:
    calls = [
        CallResult(started_at=0.0, seconds=40.0),  # 10 s inside
        CallResult(started_at=35.0, seconds=10.0),  # all 10 s inside
        CallResult(started_at=55.0, seconds=30.0),  # 5 s inside
        CallResult(started_at=70.0, seconds=5.0),  # after the window
    ]

    assert concurrency(calls, (30.0, 60.0)) == (10.0 + 10.0 + 5.0) / 30.0


def test_the_deepgram_fake_hears_each_utterance_as_the_next_line_of_its_script() -> None:
    line = caller_lines(LONG_CALL_LINES)
    heard = [line(HeardUtterance(0, index, 0.0, 1.0, b"")) for index in range(6)]

    assert heard == [*LONG_CALL_LINES, LONG_CALL_LINES[-1], LONG_CALL_LINES[-1]]


def test_cost_per_caller_turn_sums_every_call_of_the_run() -> None:
    records = [
        CallRecord(
            caller_turns=4,
            cost={
                "usd": "0.006",
                "llm": "0.001",
                "tts": "0.004",
                "stt": "0.001",
                "prompt_tokens": 3000,
                "completion_tokens": 80,
                "tts_characters": 120,
            },
        ),
        CallRecord(
            caller_turns=2,
            cost={
                "usd": "0.003",
                "llm": "0.0005",
                "tts": "0.002",
                "stt": "0.0005",
                "prompt_tokens": 1800,
                "completion_tokens": 40,
                "tts_characters": 60,
            },
        ),
    ]
    line = cost_line(records)
    assert line.startswith("cost per caller turn (6 turns, every call): $0.00150 ")
    assert "800 prompt + 20 completion tokens" in line
    assert "TTS $0.00100: 30 characters" in line
    assert cost_line([CallRecord()]) == "cost per caller turn: no turns recorded"
