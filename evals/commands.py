"""What `hibachi eval compare` and `hibachi eval transcripts` do, as plain functions.

The Typer wiring lives in `hibachi.cli`; bad input raises `typer.BadParameter`, which
Typer prints as a usage error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from pydantic import ValidationError

from evals.analytics import render_transcript_report, transcript_analytics
from evals.compare import compare_runs, render_comparison
from evals.results import RESULTS_FILE, RunResult
from hibachi.db import create_engine, create_sessionmaker
from hibachi.settings import Settings

SINCE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SINCE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)


def parse_since(text: str) -> timedelta:
    """'30m', '24h', '7d' or '2w' as a duration; ValueError with the expected shape otherwise."""
    match = _SINCE.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(
            f"expected a positive number and a unit (m, h, d or w), like 7d, 24h or 30m; got {text!r}"
        )
    return timedelta(**{SINCE_UNITS[match.group(2).lower()]: int(match.group(1))})


def load_run(path: Path) -> RunResult:
    """A run's results from `path` (a results.json or its directory), or a clear usage error."""
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise typer.BadParameter(f"no {RESULTS_FILE} at {path}")
    try:
        return RunResult.load(file)
    except ValidationError as exc:
        raise typer.BadParameter(f"{file} is not an eval results file: {exc.error_count()} errors") from exc


def _label(path: Path, default: str) -> str:
    """A run's name in tables: its directory's name."""
    directory = path.resolve().parent if path.name == RESULTS_FILE else path.resolve()
    return directory.name or default


def compare_command(baseline: Path, candidate: Path, *, color: bool = False) -> int:
    """Print how `candidate` differs from `baseline`; the exit code is 1 if any scenario regressed."""
    comparison = compare_runs(
        load_run(baseline), load_run(candidate), a_label=_label(baseline, "A"), b_label=_label(candidate, "B")
    )
    typer.echo(render_comparison(comparison, color=color), nl=False)
    return comparison.exit_code


async def transcripts_command(
    settings: Settings, since: str, *, as_json: bool = False, now: datetime | None = None
) -> None:
    """Print transcript analytics for the conversations of the last `since` (e.g. "7d")."""
    try:
        window = parse_since(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from exc
    end = now or datetime.now(UTC)
    engine = create_engine(settings)
    try:
        report = await transcript_analytics(create_sessionmaker(engine), since=end - window, now=end)
    finally:
        await engine.dispose()
    typer.echo(report.model_dump_json(indent=2) if as_json else render_transcript_report(report), nl=as_json)
