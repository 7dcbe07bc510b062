"""benchmarks.voice's steady mode: which turns it times and how many calls were up."""

from __future__ import annotations

from benchmarks.voice import CallResult, Steady, concurrency
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
