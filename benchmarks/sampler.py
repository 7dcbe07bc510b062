"""Where a Python process's CPU goes: a SIGPROF sampling profiler that runs inside it.

py-spy can't attach to another process on some hosts (gVisor, Firecracker), and run as the
server's parent it stalls the server. This runs a module (`-m`, like `python -m`) with a
`SIGPROF` timer over the process's CPU time: every `--interval` seconds of CPU, the
handler records the main thread's stack. An idle event loop uses no CPU and so takes no
samples: shares are of the busy time. At exit it writes collapsed stacks (`frame;frame;...
count` per line, what flame-graph tools read).

    .venv/bin/python -m benchmarks.sampler OUT [--interval 0.002] [--on-signal] -m MODULE ARGS...
    .venv/bin/python -m benchmarks.sampler --report OUT [--depth 2]

With `--on-signal`, sampling starts at the first SIGUSR2 rather than at once
(`benchmarks.voice --profile` sends it when the measured calls start, so start-up and the
warm-up call stay out). `--report` prints where the samples went, by the frame an event
loop callback or task started in (the frames below `asyncio.run`), `--depth` frames deep.
"""

from __future__ import annotations

import argparse
import atexit
import os
import runpy
import signal
import sys
from collections import Counter
from pathlib import Path
from types import FrameType

LOOP_ROOT = "run (asyncio/runners.py)"


def _where(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    short = path.split("site-packages/")[-1].removeprefix(os.getcwd() + "/")
    if short == path:  # the standard library: from the `lib/python3.X/` part on
        short = short.split("/lib/python3.")[-1].partition("/")[2] or short
    return f"{frame.f_code.co_name} ({short})"


def record(out: Path, interval: float, *, on_signal: bool) -> None:
    """Sample this process's main thread into `out` (written at exit)."""
    stacks: Counter[str] = Counter()

    def sample(_signum: int, frame: FrameType | None) -> None:
        frames = []
        while frame is not None:
            frames.append(_where(frame))
            frame = frame.f_back
        stacks[";".join(reversed(frames))] += 1

    def start(*_: object) -> None:
        signal.signal(signal.SIGPROF, sample)
        signal.setitimer(signal.ITIMER_PROF, interval, interval)

    def write() -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        out.write_text("".join(f"{stack} {count}\n" for stack, count in stacks.items()))

    atexit.register(write)
    if on_signal:
        signal.signal(signal.SIGUSR2, start)
    else:
        start()


def report(path: Path, depth: int, top: int = 30) -> str:
    """Shares of the samples by where each loop callback or task started, `depth` frames deep."""
    by_root: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        total += int(count)
        roots = [i for i, frame in enumerate(frames) if frame == LOOP_ROOT]
        if not roots:
            by_root["(outside the event loop: threads, greenlets, start-up)"] += int(count)
            continue
        below = frames[roots[-1] + 1 :]
        while below and "(asyncio/" in below[0]:  # the stock loop's own frames (uvloop's are C)
            below.pop(0)
        by_root[" > ".join(below[:depth]) or "(the loop itself)"] += int(count)
    lines = [f"{total} samples"]
    lines += [f"{100 * n / total:5.1f} %  {root}" for root, n in by_root.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    if "--report" in sys.argv:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("--report", type=Path, required=True)
        parser.add_argument("--depth", type=int, default=2)
        shown = parser.parse_args()
        print(report(shown.report, shown.depth))
        return
    if "-m" not in sys.argv:
        raise SystemExit(
            "usage: python -m benchmarks.sampler OUT [--interval S] [--on-signal] -m MODULE ARGS..."
        )
    split = sys.argv.index("-m")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--interval", type=float, default=0.002, help="seconds of CPU time per sample")
    parser.add_argument("--on-signal", action="store_true", help="start sampling at the first SIGUSR2")
    options = parser.parse_args(sys.argv[1:split])
    module, sys.argv = sys.argv[split + 1], sys.argv[split + 1 :]
    record(options.out, options.interval, on_signal=options.on_signal)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
