"""Progress for long runs: a live bar on a terminal (rich), one line per trial otherwise."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evals.results import TrialResult


class LiveProgress:
    """trials done/total, passed so far and the scenario running, as a rich progress bar."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bar = Progress(
            TextColumn("[bold]eval"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("passed {task.fields[passed]}/{task.completed}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}"),
            console=self.console,
            transient=False,
        )
        self.task = self.bar.add_task("trials", total=0, passed=0, current="")
        self.passed = 0

    def started(self, total: int) -> None:
        self.bar.update(self.task, total=total)
        self.bar.start()

    def trial_started(self, suite: str, scenario: str, trial: int) -> None:
        self.bar.update(self.task, current=f"{suite}/{scenario} #{trial}")

    def trial_finished(self, result: TrialResult) -> None:
        self.passed += result.passed
        if not result.passed:
            why = result.failures[0] if result.failures else (result.error or "").splitlines()[0]
            self.bar.console.print(f"[red]FAIL[/red] {result.suite}/{result.scenario} #{result.trial}: {why}")
        self.bar.update(self.task, advance=1, passed=self.passed)

    def finished(self) -> None:
        self.bar.update(self.task, current="")
        self.bar.stop()


class LineProgress:
    """One plain line per finished trial (logs, CI, pipes)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.total = 0
        self.done = 0
        self.passed = 0

    def started(self, total: int) -> None:
        self.total = total

    def trial_started(self, suite: str, scenario: str, trial: int) -> None:
        pass

    def trial_finished(self, result: TrialResult) -> None:
        self.done += 1
        self.passed += result.passed
        verdict = "pass" if result.passed else "FAIL"
        name = f"{result.suite}/{result.scenario} #{result.trial}"
        line = f"[{self.done}/{self.total}] passed {self.passed}  {verdict} {name}"
        if not result.passed:
            line += ": " + (result.failures[0] if result.failures else (result.error or "").splitlines()[0])
        print(line, file=self.out, flush=True)

    def finished(self) -> None:
        pass
