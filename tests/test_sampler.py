"""benchmarks.sampler: the in-process CPU profiler the voice benchmark's `--profile` uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.sampler import report

ROOT = Path(__file__).resolve().parent.parent


def sample(out: Path, *options: str) -> None:
    command = [sys.executable, "-m", "benchmarks.sampler", str(out), *options, "-m", "tests.sampler_target"]
    subprocess.run(command, cwd=ROOT, check=True, timeout=60)


def test_samples_a_module_and_reports_the_task_its_cpu_went_to(tmp_path: Path) -> None:
    out = tmp_path / "stacks.txt"
    sample(out, "--interval", "0.005")
    stacks = out.read_text().splitlines()
    counts = [int(line.rpartition(" ")[2]) for line in stacks]
    assert sum(counts) >= 50  # ~0.5 s of CPU at one sample per 5 ms
    in_spin = [n for line, n in zip(stacks, counts, strict=True) if "spin (tests/sampler_target.py)" in line]
    assert sum(in_spin) / sum(counts) > 0.8
    top = report(out, depth=1).splitlines()[1]
    assert top.endswith("%  spin (tests/sampler_target.py)")


def test_on_signal_waits_for_sigusr2_before_sampling(tmp_path: Path) -> None:
    out = tmp_path / "stacks.txt"
    sample(out, "--on-signal")
    assert out.read_text() == ""  # never signalled: nothing sampled
