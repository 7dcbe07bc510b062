"""Interleaved A/B of the voice benchmark: is B faster than A, or was the machine quieter?

On a shared machine the same code gives own-latency p99 anywhere from ~30 to ~100 ms at
100 calls, depending on what else the host runs, and that drifts over minutes. Runs of A
followed by runs of B therefore compare two moments as much as two versions. This runs
the voice benchmark for A and B alternately (A B, B A, A B, ...), pools each side's turns
(`--turns`), and prints both sides next to each other:

- own added latency and end to end, p50 / p90 / p99, pooled, and each run's own
  p99 and server CPU seconds;
- where the time went, per hop, as ms later than the provider latency the fakes are set to:
  the STT final after speech end (300 ms), the model's first sentence after the request
  (350 ms; turns whose first sentence was synthesised ahead, where it is timed on its own)
  and the TTS first byte after the sentence (150 ms).

A side is a git ref (checked out in a temporary worktree, run with this interpreter)
and/or extra benchmark options:

    .venv/bin/python -m benchmarks.ab --a HEAD~1 --b HEAD [--runs 5] [--calls 100]
    .venv/bin/python -m benchmarks.ab --a-args "--server-workers 1" --b-args "--server-workers 2"
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.api import percentile
from benchmarks.voice import HOPS, ROOT, hop_lateness


@dataclass
class Side:
    name: str
    args: list[str]
    turns: Path
    directory: Path = ROOT
    run_p99: list[str] = field(default_factory=list)
    run_cpu: list[str] = field(default_factory=list)  # server CPU seconds per run


def summary(turns: list[dict[str, Any]]) -> dict[str, str]:
    def q(values: list[float]) -> str:
        if not values:
            return "-"
        return " / ".join(f"{percentile(values, p):.1f}" for p in (50, 90, 99))

    lateness: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for turn in turns:
        for hop, ms in hop_lateness(turn["marks"]).items():
            lateness[hop].append(ms)
    return {
        "turns": str(len(turns)),
        "own p50 / p90 / p99": q([t["own_ms"] for t in turns]),
        "e2e p50 / p90 / p99": q([t["e2e_ms"] for t in turns]),
        **{f"{hop} late p50 / p90 / p99": q(values) for hop, values in lateness.items()},
    }


@contextmanager
def checkout(ref: str, parent: Path) -> Iterator[Path]:
    """`ref` in a throwaway worktree (removed afterwards)."""
    directory = parent / ref.replace("/", "_").replace("~", "-").replace("^", "-")
    subprocess.run(["git", "worktree", "add", "--detach", str(directory), ref], cwd=ROOT, check=True)
    try:
        yield directory
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(directory)], cwd=ROOT, check=False)


def run_once(side: Side, calls: int) -> None:
    command = [sys.executable, "-m", "benchmarks.voice", "--calls", str(calls), "--turns", str(side.turns)]
    done = subprocess.run(
        [*command, *side.args], cwd=side.directory, capture_output=True, text=True, check=False
    )
    own = [line for line in done.stdout.splitlines() if line.startswith("own added latency")]
    if done.returncode != 0 or not own:
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"{side.name}: the benchmark failed (exit {done.returncode})")
    p99 = own[-1].split("p99")[1].split("ms")[0].strip()
    cpu = [line for line in done.stdout.splitlines() if line.startswith("server CPU per concurrent call")]
    seconds = cpu[-1].split(", server ")[1].split(" s CPU")[0] if cpu else "?"
    side.run_p99.append(p99)
    side.run_cpu.append(seconds)
    print(f"  {side.name}: own p99 {p99} ms, server CPU {seconds} s", flush=True)
    costs = [line for line in done.stdout.splitlines() if line.startswith("cost per caller turn")]
    if costs:  # the measured size's (the warm-up call's comes first)
        print(f"    {costs[-1]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--a", help="git ref for side A (default: this checkout)")
    parser.add_argument("--b", help="git ref for side B (default: this checkout)")
    parser.add_argument("--a-args", default="", help="extra benchmark options for side A")
    parser.add_argument("--b-args", default="", help="extra benchmark options for side B")
    parser.add_argument("--runs", type=int, default=5, help="runs per side")
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls per run")
    args = parser.parse_args()

    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hibachi-ab-")))
        sides = []
        for name, ref, extra in (("A", args.a, args.a_args), ("B", args.b, args.b_args)):
            side = Side(
                f"{name} ({ref or 'this checkout'}{' ' + extra if extra else ''})",
                shlex.split(extra),
                scratch / f"{name}.jsonl",
            )
            if ref is not None:
                side.directory = stack.enter_context(checkout(ref, scratch))
            sides.append(side)
        for round_no in range(args.runs):
            print(f"round {round_no + 1} of {args.runs}", flush=True)
            for side in sides if round_no % 2 == 0 else reversed(sides):
                run_once(side, args.calls)
        results = []
        for side in sides:
            turns = [json.loads(line) for line in side.turns.read_text().splitlines()]
            results.append(summary([t for t in turns if t["calls"] == args.calls]))

    print(f"\n== {args.calls} calls, {args.runs} interleaved runs per side, turns pooled (ms) ==")
    width = max(len(key) for key in results[0])
    print(f"{'':{width}}  {sides[0].name:>28}  {sides[1].name:>28}")
    for key in results[0]:
        print(f"{key:{width}}  {results[0][key]:>28}  {results[1][key]:>28}")
    for label, attribute in (("runs own p99", "run_p99"), ("runs server CPU s", "run_cpu")):
        a, b = (", ".join(getattr(side, attribute)) for side in sides)
        print(f"{label:{width}}  {a:>28}  {b:>28}")


if __name__ == "__main__":
    main()
