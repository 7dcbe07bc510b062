"""Compare two eval runs: is the candidate (B) worse than the baseline (A)?

A scenario regressed when it passed a smaller share of its trials in B than in A
(shares, so runs with different k compare fairly). Latency p50/p95 and cost per
conversation are flagged when B is worse by more than a relative threshold; they are
warnings, not failures, because timings on shared CI machines are noisy. The exit
code is non-zero exactly when a scenario regressed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evals.results import GroupScore, RunResult

#: B is flagged when it is this much slower (relative) than A at p50 or p95.
LATENCY_REGRESSION = 0.20
#: B is flagged when a conversation costs this much more (relative) than in A.
COST_REGRESSION = 0.10


@dataclass(slots=True, frozen=True)
class ScoreDelta:
    name: str
    a: GroupScore | None
    b: GroupScore | None

    @property
    def pass_1_delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b.pass_1 - self.a.pass_1

    @property
    def pass_k_delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b.pass_k - self.a.pass_k


@dataclass(slots=True, frozen=True)
class ScenarioChange:
    key: str  # "suite/scenario"
    a: tuple[int, int]  # (passed, trials)
    b: tuple[int, int]

    @property
    def a_rate(self) -> float:
        return self.a[0] / self.a[1] if self.a[1] else 0.0

    @property
    def b_rate(self) -> float:
        return self.b[0] / self.b[1] if self.b[1] else 0.0


@dataclass(slots=True, frozen=True)
class MetricDelta:
    name: str
    a: float | None
    b: float | None
    threshold: float  # relative increase that counts as a regression

    @property
    def change(self) -> float | None:
        """Relative change from A to B (0.25 = 25% higher); None when either is missing or A is 0."""
        if self.a is None or self.b is None or self.a == 0:
            return None
        return (self.b - self.a) / self.a

    @property
    def regressed(self) -> bool:
        change = self.change
        return change is not None and change > self.threshold


@dataclass(slots=True)
class Comparison:
    a_label: str
    b_label: str
    a_k: int
    b_k: int
    overall: ScoreDelta
    categories: list[ScoreDelta]
    regressed: list[ScenarioChange] = field(default_factory=list)
    improved: list[ScenarioChange] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    metrics: list[MetricDelta] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when any scenario regressed, else 0 (metric warnings never fail)."""
        return 1 if self.regressed else 0


def compare_runs(a: RunResult, b: RunResult, *, a_label: str = "A", b_label: str = "B") -> Comparison:
    """Compare baseline `a` with candidate `b`."""
    sa, sb = a.summary(), b.summary()
    categories = sorted(set(sa.by_category) | set(sb.by_category))
    comparison = Comparison(
        a_label=a_label,
        b_label=b_label,
        a_k=a.k,
        b_k=b.k,
        overall=ScoreDelta("overall", sa.overall, sb.overall),
        categories=[
            ScoreDelta(name, sa.by_category.get(name), sb.by_category.get(name)) for name in categories
        ],
        metrics=[
            MetricDelta("latency p50 (s)", sa.latency_p50_s, sb.latency_p50_s, LATENCY_REGRESSION),
            MetricDelta("latency p95 (s)", sa.latency_p95_s, sb.latency_p95_s, LATENCY_REGRESSION),
            MetricDelta(
                "cost / conversation ($)",
                sa.cost_per_conversation_usd,
                sb.cost_per_conversation_usd,
                COST_REGRESSION,
            ),
            MetricDelta("cost / minute ($)", sa.cost_per_minute_usd, sb.cost_per_minute_usd, COST_REGRESSION),
        ],
    )
    for key in sorted(set(sa.by_scenario) | set(sb.by_scenario)):
        if key not in sb.by_scenario:
            comparison.only_in_a.append(key)
        elif key not in sa.by_scenario:
            comparison.only_in_b.append(key)
        else:
            change = ScenarioChange(key, sa.by_scenario[key], sb.by_scenario[key])
            if change.b_rate < change.a_rate:
                comparison.regressed.append(change)
            elif change.b_rate > change.a_rate:
                comparison.improved.append(change)
    return comparison


# ---- rendering ----------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _delta(value: float | None) -> str:
    if value is None:
        return "-"
    points = value * 100
    style = "green" if points > 0.05 else "red" if points < -0.05 else "dim"
    return f"[{style}]{points:+.1f} pp[/{style}]"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _score_table(comparison: Comparison) -> Table:
    a, b = escape(comparison.a_label), escape(comparison.b_label)
    table = Table(title="Pass rates", title_justify="left")
    table.add_column("group")
    for column in (f"pass^1 {a}", f"pass^1 {b}", "Δ", f"pass^k {a}", f"pass^k {b}", "Δ"):
        table.add_column(column, justify="right")
    for row in [comparison.overall, *comparison.categories]:
        table.add_row(
            row.name,
            _pct(row.a.pass_1 if row.a else None),
            _pct(row.b.pass_1 if row.b else None),
            _delta(row.pass_1_delta),
            _pct(row.a.pass_k if row.a else None),
            _pct(row.b.pass_k if row.b else None),
            _delta(row.pass_k_delta),
            end_section=row is comparison.overall,
        )
    return table


def _scenario_table(title: str, changes: list[ScenarioChange], comparison: Comparison) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("scenario")
    table.add_column(f"passed {escape(comparison.a_label)}", justify="right")
    table.add_column(f"passed {escape(comparison.b_label)}", justify="right")
    for change in changes:
        table.add_row(escape(change.key), f"{change.a[0]}/{change.a[1]}", f"{change.b[0]}/{change.b[1]}")
    return table


def _metric_table(comparison: Comparison) -> Table:
    table = Table(title="Latency and cost", title_justify="left")
    table.add_column("metric")
    for column in (escape(comparison.a_label), escape(comparison.b_label), "change", "limit"):
        table.add_column(column, justify="right")
    table.add_column("")
    for metric in comparison.metrics:
        change = metric.change
        table.add_row(
            metric.name,
            _number(metric.a),
            _number(metric.b),
            "-" if change is None else f"{change:+.1%}",
            f"+{metric.threshold:.0%}",
            "[red]REGRESSED[/red]" if metric.regressed else "",
        )
    return table


def render_comparison(comparison: Comparison, *, width: int = 100, color: bool = False) -> str:
    """The comparison as terminal text (rich tables; ANSI colours only with `color`)."""
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, force_terminal=color, color_system="standard" if color else None
    )
    a, b = escape(comparison.a_label), escape(comparison.b_label)
    console.print(
        f"Comparing [bold]{a}[/bold] (baseline, k={comparison.a_k}) "
        f"with [bold]{b}[/bold] (k={comparison.b_k})"
    )
    if comparison.a_k != comparison.b_k:
        console.print("[yellow]k differs between the runs: compare pass^k with care[/yellow]")
    console.print(_score_table(comparison))
    if comparison.regressed:
        console.print(
            _scenario_table(
                f"Regressed scenarios ({len(comparison.regressed)})", comparison.regressed, comparison
            )
        )
    if comparison.improved:
        console.print(
            _scenario_table(
                f"Improved scenarios ({len(comparison.improved)})", comparison.improved, comparison
            )
        )
    for label, keys in (
        (comparison.a_label, comparison.only_in_a),
        (comparison.b_label, comparison.only_in_b),
    ):
        if keys:
            console.print(escape(f"Only in {label}: {', '.join(keys)}"))
    console.print(_metric_table(comparison))
    verdict = (
        f"[red]{len(comparison.regressed)} scenario(s) regressed[/red]"
        if comparison.regressed
        else "[green]no scenario regressed[/green]"
    )
    warnings = sum(1 for metric in comparison.metrics if metric.regressed)
    if warnings:
        verdict += f"; {warnings} latency/cost metric(s) over their limit (warning)"
    console.print(verdict)
    return buffer.getvalue()
