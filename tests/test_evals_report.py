"""The reporting side of evals: the HTML report, run comparison, and the CLI helpers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer

from evals.commands import compare_command, parse_since
from evals.compare import compare_runs, render_comparison
from evals.report import REPORT_FILE, write_report
from evals.results import RunResult, ToolCallRecord, TrialResult, TurnRecord

STARTED = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)


def trial(
    scenario: str,
    index: int,
    *,
    category: str = "booking",
    passed: bool = True,
    failures: tuple[str, ...] = (),
    latencies: tuple[float, ...] = (0.8, 1.2),
    sentiments: tuple[float, ...] = (0.1, 0.4),
    cost: float = 0.002,
    duration: float = 60.0,
    transfers: tuple[str, ...] = (),
    customer_text: str = "Hi, 12 adults on December 12 at 6pm please",
) -> TrialResult:
    turns: list[TurnRecord] = []
    for position, latency in enumerate(latencies):
        sentiment = sentiments[position] if position < len(sentiments) else None
        turns.append(TurnRecord(role="customer", text=customer_text, sentiment=sentiment))
        turns.append(TurnRecord(role="agent", text=f"reply {position}", latency_s=latency))
    return TrialResult(
        suite="core",
        scenario=scenario,
        category=category,
        channel="sms",
        trial=index,
        passed=passed,
        failures=list(failures),
        turns=turns,
        tool_calls=[
            ToolCallRecord(name="check_availability", ok=True),
            ToolCallRecord(name="create_booking", ok=passed, error=None if passed else "SlotUnavailable"),
        ],
        transfer_reasons=list(transfers),
        cost_usd=cost,
        duration_s=duration,
        tokens=120,
    )


def run_of(trials: list[TrialResult], *, k: int = 2) -> RunResult:
    return RunResult(
        suites=["core"],
        brain="llm",
        model="gpt-4o-mini",
        k=k,
        started_at=STARTED,
        finished_at=STARTED + timedelta(minutes=3),
        git_commit="abc1234",
        trials=trials,
    )


def sample_run() -> RunResult:
    failure = "booking: expected guests=12, got <10> & no deposit"
    return run_of(
        [
            trial("book-12-adults", 0),
            trial("book-12-adults", 1),
            trial("faq-allergies", 0, category="faq", latencies=(0.5,), cost=0.001),
            trial(
                "faq-allergies",
                1,
                category="faq",
                passed=False,
                failures=(failure,),
                latencies=(4.5,),
                sentiments=(-0.7,),
                customer_text="<script>alert('x')</script> is it nut free?",
            ),
            trial("complaint", 0, category="transfer", transfers=("complaint",), sentiments=(-0.8, -0.5)),
            trial("complaint", 1, category="transfer", transfers=("complaint",), sentiments=(-0.6, -0.2)),
        ]
    )


def test_report_is_one_self_contained_file_with_charts_and_scores(tmp_path: Path) -> None:
    path = write_report(sample_run(), tmp_path / "run")

    assert path == tmp_path / "run" / REPORT_FILE
    html = path.read_text()
    # Nothing is fetched from elsewhere: no external scripts, styles, images or fonts.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html
    assert "<link" not in html
    assert html.count("<svg") >= 5
    assert "pass^1 and pass^k by category" in html
    # 5 of 6 trials passed; pass^2 averages 1, 0 and 1 over the three scenarios.
    assert "83.3%" in html
    assert "66.7%" in html
    assert "gpt-4o-mini" in html
    assert "abc1234" in html
    assert "p95" in html


def test_report_escapes_transcripts_and_failures(tmp_path: Path) -> None:
    html = write_report(sample_run(), tmp_path).read_text()

    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; is it nut free?" in html
    assert "booking: expected guests=12, got &lt;10&gt; &amp; no deposit" in html
    # The failing trial's transcript and tool calls are there, folded.
    assert "<details><summary>transcript (2 messages, 2 tool calls)</summary>" in html
    assert "create_booking: failed (SlotUnavailable)" in html
    # Only the report's own sorting script is inline.
    assert html.count("<script>") == 1


def test_report_of_an_empty_run_still_renders(tmp_path: Path) -> None:
    html = write_report(run_of([], k=1), tmp_path).read_text()
    assert "no data" in html
    assert "0 scenarios, 0 trials" in html


def test_a_scenario_that_passes_less_often_is_a_regression() -> None:
    baseline = sample_run()
    candidate = baseline.model_copy(deep=True)
    candidate.trials[1] = trial("book-12-adults", 1, passed=False, failures=("no booking made",))

    comparison = compare_runs(baseline, candidate, a_label="main", b_label="branch")

    assert [change.key for change in comparison.regressed] == ["core/book-12-adults"]
    assert comparison.improved == []
    assert comparison.exit_code == 1
    booking = next(delta for delta in comparison.categories if delta.name == "booking")
    assert booking.pass_1_delta == pytest.approx(-0.5)
    assert booking.pass_k_delta == pytest.approx(-1.0)
    text = render_comparison(comparison)
    assert "core/book-12-adults" in text
    assert "1 scenario(s) regressed" in text


def test_an_improved_scenario_is_reported_and_does_not_fail() -> None:
    baseline = sample_run()
    candidate = baseline.model_copy(deep=True)
    candidate.trials[3] = trial("faq-allergies", 1, category="faq", latencies=(0.5,))

    comparison = compare_runs(baseline, candidate)

    assert [change.key for change in comparison.improved] == ["core/faq-allergies"]
    assert comparison.exit_code == 0


def test_slower_and_costlier_runs_are_flagged_as_warnings() -> None:
    baseline = run_of(
        [trial("a", 0, latencies=(1.0,), cost=0.010), trial("a", 1, latencies=(1.0,), cost=0.010)]
    )
    candidate = run_of(
        [trial("a", 0, latencies=(1.3,), cost=0.0105), trial("a", 1, latencies=(1.3,), cost=0.0105)]
    )

    comparison = compare_runs(baseline, candidate)

    flagged = {metric.name for metric in comparison.metrics if metric.regressed}
    assert flagged == {"latency p50 (s)", "latency p95 (s)"}  # cost +5% is under its 10% limit
    assert comparison.exit_code == 0
    assert "REGRESSED" in render_comparison(comparison)


def test_compare_command_reads_result_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = sample_run()
    candidate = baseline.model_copy(deep=True)
    candidate.trials[4] = trial("complaint", 0, category="transfer", passed=False, failures=("no transfer",))
    baseline.save(tmp_path / "a")
    candidate.save(tmp_path / "b")
    (tmp_path / "same").mkdir()
    baseline.save(tmp_path / "same")

    assert compare_command(tmp_path / "a", tmp_path / "b") == 1
    assert "core/complaint" in capsys.readouterr().out
    assert compare_command(tmp_path / "a", tmp_path / "same" / "results.json") == 0
    assert "no scenario regressed" in capsys.readouterr().out
    with pytest.raises(typer.BadParameter, match=r"no results\.json"):
        compare_command(tmp_path / "a", tmp_path / "missing")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        (" 2W ", timedelta(weeks=2)),
    ],
)
def test_since_accepts_minutes_hours_days_and_weeks(text: str, expected: timedelta) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "-7d", "0d", "7 days", "1.5h", "7y"])
def test_since_rejects_anything_else_with_the_expected_shape(text: str) -> None:
    with pytest.raises(ValueError, match="like 7d, 24h or 30m"):
        parse_since(text)
