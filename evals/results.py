"""What an eval run produces: one `TrialResult` per (scenario, trial), gathered in a `RunResult`.

This is the seam between the runner (which fills it) and the reports, comparisons and
analytics (which read it back from `results.json`). Summaries are computed here so every
consumer agrees on what pass^k means.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

RESULTS_FILE = "results.json"


class TurnRecord(BaseModel):
    """One message in a trial's conversation, as the caller saw or said it."""

    role: str  # "customer" | "agent"
    text: str
    # Agent turns: seconds from the caller's message to the agent's reply (voice: to first audio).
    latency_s: float | None = None
    # Customer turns: the sentiment score stored for the turn (-1..1).
    sentiment: float | None = None


class ToolCallRecord(BaseModel):
    name: str
    ok: bool
    error: str | None = None


class TrialResult(BaseModel):
    suite: str
    scenario: str
    category: str
    channel: str  # "sms" | "voice-text" | "voice-audio"
    trial: int  # 0..k-1
    passed: bool
    # Human-readable failed assertions ("booking: expected guests=12, got 10"); empty when passed.
    failures: list[str] = Field(default_factory=list)
    # Set when the trial crashed rather than failed an assertion (the harness's own error).
    error: str | None = None
    turns: list[TurnRecord] = Field(default_factory=list)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    transfer_reasons: list[str] = Field(default_factory=list)
    cost_usd: float = 0.0
    # Conversation length for cost per minute: call duration for voice, first to last message for text.
    duration_s: float = 0.0
    tokens: int = 0

    @property
    def agent_latencies(self) -> list[float]:
        return [t.latency_s for t in self.turns if t.role == "agent" and t.latency_s is not None]

    @property
    def sentiments(self) -> list[float]:
        return [t.sentiment for t in self.turns if t.role == "customer" and t.sentiment is not None]


class RunResult(BaseModel):
    suites: list[str]
    brain: str  # "deterministic" | "llm"
    model: str | None = None
    k: int
    started_at: datetime
    finished_at: datetime
    git_commit: str | None = None
    trials: list[TrialResult] = Field(default_factory=list)

    def save(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / RESULTS_FILE
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> RunResult:
        """Read `results.json` (or a directory holding one)."""
        if path.is_dir():
            path = path / RESULTS_FILE
        return cls.model_validate_json(path.read_text())

    def summary(self) -> RunSummary:
        return summarize(self.trials, k=self.k)


class GroupScore(BaseModel):
    scenarios: int
    trials: int
    pass_1: float  # fraction of trials that passed (the mean of pass^1 over scenarios)
    pass_k: float  # mean over scenarios of the chance that k trials drawn all pass


class RunSummary(BaseModel):
    overall: GroupScore
    by_category: dict[str, GroupScore]
    by_suite: dict[str, GroupScore]
    # Scenario key "suite/scenario" -> (passed trials, trials).
    by_scenario: dict[str, tuple[int, int]]
    latency_p50_s: float | None
    latency_p95_s: float | None
    cost_per_conversation_usd: float
    cost_per_minute_usd: float | None
    mean_sentiment: float | None
    transfer_rate: float


def pass_hat_k(passed: int, trials: int, k: int) -> float:
    """tau-bench's pass^k estimator: C(c, k) / C(n, k), the chance k of n trials all pass."""
    if trials < k:
        raise ValueError(f"pass^{k} needs at least {k} trials, got {trials}")
    return math.comb(passed, k) / math.comb(trials, k)


def _score(trials: list[TrialResult], k: int) -> GroupScore:
    per_scenario: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for trial in trials:
        per_scenario[(trial.suite, trial.scenario)].append(trial.passed)
    if not per_scenario:
        return GroupScore(scenarios=0, trials=0, pass_1=0.0, pass_k=0.0)
    outcomes = list(per_scenario.values())
    return GroupScore(
        scenarios=len(outcomes),
        trials=len(trials),
        pass_1=statistics.fmean(pass_hat_k(sum(o), len(o), 1) for o in outcomes),
        pass_k=statistics.fmean(pass_hat_k(sum(o), len(o), min(k, len(o))) for o in outcomes),
    )


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def summarize(trials: list[TrialResult], *, k: int) -> RunSummary:
    by_category: dict[str, list[TrialResult]] = defaultdict(list)
    by_suite: dict[str, list[TrialResult]] = defaultdict(list)
    by_scenario: dict[str, list[bool]] = defaultdict(list)
    for trial in trials:
        by_category[trial.category].append(trial)
        by_suite[trial.suite].append(trial)
        by_scenario[f"{trial.suite}/{trial.scenario}"].append(trial.passed)
    latencies = [value for trial in trials for value in trial.agent_latencies]
    sentiments = [value for trial in trials for value in trial.sentiments]
    minutes = sum(trial.duration_s for trial in trials) / 60
    cost = sum(trial.cost_usd for trial in trials)
    return RunSummary(
        overall=_score(trials, k),
        by_category={name: _score(group, k) for name, group in sorted(by_category.items())},
        by_suite={name: _score(group, k) for name, group in sorted(by_suite.items())},
        by_scenario={key: (sum(o), len(o)) for key, o in sorted(by_scenario.items())},
        latency_p50_s=_percentile(latencies, 0.50),
        latency_p95_s=_percentile(latencies, 0.95),
        cost_per_conversation_usd=cost / len(trials) if trials else 0.0,
        cost_per_minute_usd=cost / minutes if minutes > 0 else None,
        mean_sentiment=statistics.fmean(sentiments) if sentiments else None,
        transfer_rate=sum(1 for t in trials if t.transfer_reasons) / len(trials) if trials else 0.0,
    )
