"""The HTML report of an eval run: one self-contained file an analyst can open or attach.

Everything is inline (CSS, SVG charts drawn in Python by `evals.charts`, a few lines of
JS to sort the scenario table), so it works offline and from an email attachment.
All text that came from a run (scenario names, transcripts, failures) is escaped.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from html import escape
from pathlib import Path

from evals import charts
from evals.results import RunResult, RunSummary, TrialResult

REPORT_FILE = "report.html"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1080px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5b6475;margin:0 0 16px}.meta code{background:#eceef2;padding:1px 4px;border-radius:3px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:10px 14px;min-width:120px}
.card b{display:block;font-size:22px}.card span{color:#5b6475;font-size:12px}
.card.good b{color:#17803d}.card.bad b{color:#b42318}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px}
.panel{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:10px}
svg.chart{width:100%;height:auto;display:block}
svg .title{font-size:13px;font-weight:600;fill:#1d2330}svg .tick{font-size:11px;fill:#5b6475}
svg .value{font-size:10px;fill:#1d2330}svg .empty{font-size:13px;fill:#8a93a3}
svg .grid{stroke:#eceef2}svg .s0{fill:#3b6fd8}svg .s1{fill:#f08c2e}
svg .mark{stroke:#b42318;stroke-width:1.5;stroke-dasharray:4 3}
svg .mark-label{font-size:11px;fill:#b42318;paint-order:stroke;stroke:#fff;stroke-width:3px}
svg .faint{fill:none;stroke:#3b6fd8;stroke-opacity:.18;stroke-width:1.5}
svg .main{fill:none;stroke:#b42318;stroke-width:2.5}svg .main-dot{fill:#b42318}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eceef2;vertical-align:top}
th{background:#eceef2;cursor:pointer;user-select:none;white-space:nowrap}
td.num,th.num{text-align:right}tr.fail td:first-child{border-left:3px solid #b42318}
tr.pass td:first-child{border-left:3px solid #17803d}
.failures{color:#b42318;margin:4px 0 0;padding-left:18px}
details{margin:4px 0}summary{cursor:pointer;color:#3b6fd8}
.turn{margin:2px 0;padding:4px 8px;border-radius:6px;white-space:pre-wrap}
.turn.customer{background:#eef3fd}.turn.agent{background:#f3f4f6}
.turn small{color:#5b6475}.tools{font-family:ui-monospace,monospace;font-size:12px;color:#394150}
.err{color:#b42318}
"""

# Sorts the scenario table by the clicked column (numbers by data-sort, text otherwise).
SORT_JS = """
document.querySelectorAll("table.sortable th").forEach((th, col) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0];
  const asc = th.dataset.dir !== "asc"; th.dataset.dir = asc ? "asc" : "desc";
  const key = r => r.cells[col].dataset.sort ?? r.cells[col].textContent.trim();
  [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
    const c = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
    return asc ? c : -c;
  }).forEach(r => body.appendChild(r));
}));
"""


def write_report(run: RunResult, out_dir: Path) -> Path:
    """Write `out_dir/report.html` for `run` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_FILE
    path.write_text(render_report(run), encoding="utf-8")
    return path


def render_report(run: RunResult) -> str:
    """The whole report page as one HTML string."""
    summary = run.summary()
    title = f"Eval report: {', '.join(run.suites)}"
    sections = [
        _header(run, summary),
        _section("Pass rates by category", _panel(_category_chart(summary))),
        _section(
            "Latency and cost",
            f'<div class="grid2">{_panel(_latency_chart(run.trials, summary))}'
            f"{_panel(_cost_chart(run.trials, summary))}</div>",
        ),
        _section("Sentiment", _sentiment(run.trials)),
        _section("Transfers", _transfers(run.trials, summary)),
        _section("Scenarios", _scenario_table(run)),
    ]
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(sections)}</main><script>{SORT_JS}</script></body></html>\n"
    )


# ---- pieces -------------------------------------------------------------------------------


def _section(heading: str, body: str) -> str:
    return f"<section><h2>{escape(heading)}</h2>{body}</section>"


def _panel(body: str) -> str:
    return f'<div class="panel">{body}</div>'


def _card(label: str, value: str, tone: str = "") -> str:
    return f'<div class="card {tone}"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _tone(rate: float) -> str:
    return "good" if rate >= 0.999 else "bad"


def _header(run: RunResult, summary: RunSummary) -> str:
    brain = run.brain + (f" ({run.model})" if run.model else "")
    took = (run.finished_at - run.started_at).total_seconds()
    meta = [
        f"brain <code>{escape(brain)}</code>",
        f"k = {run.k}",
        f"{escape(run.started_at.isoformat(timespec='seconds'))} ({took:.0f}s)",
        f"commit <code>{escape(run.git_commit or 'unknown')}</code>",
        f"{summary.overall.scenarios} scenarios, {summary.overall.trials} trials",
    ]
    sentiment = summary.mean_sentiment
    cards = [
        _card("pass^1", _pct(summary.overall.pass_1), _tone(summary.overall.pass_1)),
        _card(f"pass^{run.k}", _pct(summary.overall.pass_k), _tone(summary.overall.pass_k)),
        _card("latency p50", _seconds(summary.latency_p50_s)),
        _card("latency p95", _seconds(summary.latency_p95_s)),
        _card("cost / conversation", _usd(summary.cost_per_conversation_usd)),
        _card("cost / minute", _usd(summary.cost_per_minute_usd)),
        _card("mean sentiment", "-" if sentiment is None else f"{sentiment:+.2f}"),
        _card("transfer rate", _pct(summary.transfer_rate)),
    ]
    return (
        f"<header><h1>Eval report: {escape(', '.join(run.suites))}</h1>"
        f'<p class="meta">{" · ".join(meta)}</p><div class="cards">{"".join(cards)}</div></header>'
    )


def _category_chart(summary: RunSummary) -> str:
    groups = [(name, (score.pass_1, score.pass_k)) for name, score in summary.by_category.items()]
    return charts.bar_chart("pass^1 and pass^k by category", groups, ["pass^1", "pass^k"])


def _latency_chart(trials: list[TrialResult], summary: RunSummary) -> str:
    latencies = [value for trial in trials for value in trial.agent_latencies]
    markers = [
        (name, value)
        for name, value in (("p50", summary.latency_p50_s), ("p95", summary.latency_p95_s))
        if value is not None
    ]
    return charts.histogram(
        f"Agent turn latency ({len(latencies)} turns)",
        latencies,
        unit="s",
        markers=markers,
        low=0.0,
        fmt=lambda v: f"{v:.2f}",
    )


def _cost_chart(trials: list[TrialResult], summary: RunSummary) -> str:
    costs = [trial.cost_usd for trial in trials]
    markers = [("mean", summary.cost_per_conversation_usd)] if costs else []
    per_minute = summary.cost_per_minute_usd
    title = f"Cost per conversation (USD; {_usd(per_minute)} per minute)"
    return charts.histogram(title, costs, markers=markers, low=0.0, fmt=lambda v: f"{v:.4f}")


def _sentiment(trials: list[TrialResult]) -> str:
    trajectories = [trial.sentiments for trial in trials if trial.sentiments]
    by_turn: dict[int, list[float]] = defaultdict(list)
    for line in trajectories:
        for index, value in enumerate(line):
            by_turn[index].append(value)
    mean = [statistics.fmean(by_turn[i]) for i in sorted(by_turn)]
    lines = charts.line_chart(
        "Sentiment by customer turn (each trial, and the mean in red)",
        trajectories,
        highlight=mean,
        x_label="customer turn",
    )
    values = [value for line in trajectories for value in line]
    spread = charts.histogram(
        "Sentiment of customer turns", values, bins=10, low=-1.0, high=1.0, fmt=lambda v: f"{v:+.1f}"
    )
    return f'<div class="grid2">{_panel(lines)}{_panel(spread)}</div>'


def _transfers(trials: list[TrialResult], summary: RunSummary) -> str:
    reasons = Counter(reason for trial in trials for reason in trial.transfer_reasons)
    transferred = sum(1 for trial in trials if trial.transfer_reasons)
    rows = "".join(
        f'<tr><td>{escape(reason)}</td><td class="num">{count}</td></tr>'
        for reason, count in reasons.most_common()
    )
    table = (
        "<table><thead><tr><th>reason</th><th class='num'>transfers</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    return (
        f"<p>{transferred} of {len(trials)} trials transferred to staff "
        f"({_pct(summary.transfer_rate)}).</p>{table}"
    )


def _scenario_table(run: RunResult) -> str:
    by_scenario: dict[str, list[TrialResult]] = defaultdict(list)
    for trial in run.trials:
        by_scenario[f"{trial.suite}/{trial.scenario}"].append(trial)
    rows = []
    for key, trials in sorted(
        by_scenario.items(), key=lambda item: (_passes(item[1]) == len(item[1]), item[0])
    ):
        passed = _passes(trials)
        first = trials[0]
        failing = [trial for trial in sorted(trials, key=lambda t: t.trial) if not trial.passed]
        latencies = [value for trial in trials for value in trial.agent_latencies]
        mean_latency = statistics.fmean(latencies) if latencies else None
        mean_cost = statistics.fmean(trial.cost_usd for trial in trials)
        rows.append(
            f'<tr class="{"pass" if not failing else "fail"}">'
            f"<td>{escape(key)}</td><td>{escape(first.category)}</td><td>{escape(first.channel)}</td>"
            f'<td class="num" data-sort="{passed / len(trials):.4f}">{passed}/{len(trials)}</td>'
            f'<td class="num" data-sort="{mean_latency or 0:.4f}">{_seconds(mean_latency)}</td>'
            f'<td class="num" data-sort="{mean_cost:.6f}">{_usd(mean_cost)}</td>'
            f"<td>{''.join(_failed_trial(trial) for trial in failing)}</td></tr>"
        )
    return (
        '<table class="sortable"><thead><tr><th>scenario</th><th>category</th><th>channel</th>'
        '<th class="num">passed</th><th class="num">mean latency</th><th class="num">mean cost</th>'
        f"<th>failures</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _passes(trials: list[TrialResult]) -> int:
    return sum(1 for trial in trials if trial.passed)


def _failed_trial(trial: TrialResult) -> str:
    problems = [escape(failure) for failure in trial.failures]
    if trial.error:
        problems.append(f'<span class="err">error: {escape(trial.error)}</span>')
    items = "".join(f"<li>{problem}</li>" for problem in problems)
    return (
        f'<div><b>trial {trial.trial}</b><ul class="failures">{items}</ul>'
        f"<details><summary>transcript ({len(trial.turns)} messages, "
        f"{len(trial.tool_calls)} tool calls)</summary>{_transcript(trial)}</details></div>"
    )


def _transcript(trial: TrialResult) -> str:
    turns = []
    for turn in trial.turns:
        notes = []
        if turn.latency_s is not None:
            notes.append(f"{turn.latency_s:.2f}s")
        if turn.sentiment is not None:
            notes.append(f"sentiment {turn.sentiment:+.2f}")
        note = f" <small>({escape(', '.join(notes))})</small>" if notes else ""
        role = escape(turn.role)
        turns.append(f'<div class="turn {role}"><b>{role}</b>{note}: {escape(turn.text)}</div>')
    calls = "".join(
        f"<li>{escape(call.name)}: {'ok' if call.ok else 'failed'}"
        f"{escape(f' ({call.error})') if call.error else ''}</li>"
        for call in trial.tool_calls
    )
    tools = f'<p class="tools">tool calls:</p><ul class="tools">{calls}</ul>' if calls else ""
    transfers = (
        f"<p>transferred: {escape(', '.join(trial.transfer_reasons))}</p>" if trial.transfer_reasons else ""
    )
    return "".join(turns) + tools + transfers
