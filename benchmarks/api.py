"""API benchmark: p50/p95 latency, requests/s and CPU per request for availability and booking creation.

Starts `hibachi serve` as its own process on a throwaway data dir (embedded PostgreSQL
and Redis), then drives it over HTTP at a fixed concurrency from this process. CPU per
request is read from /proc for the server process (including its in-process job worker)
and the embedded PostgreSQL; unlike latency, it barely moves when other processes load
the machine.

    .venv/bin/python -m benchmarks.api [--requests 2000] [--concurrency 16] [--server-workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

SEED_TARGET_P95_MS = 200
AIM_P95_MS = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(base: str, proc: subprocess.Popen[bytes], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                if (await client.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    raise SystemExit("server did not become ready")


def _stat(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces


def _own_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds of one process (with `children`, also its reaped children's); 0 if gone."""
    try:
        fields = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu(data_dir: str) -> float:
    """CPU seconds of the embedded PostgreSQL under `data_dir`: postmaster, live and exited backends."""
    total = 0.0
    postmasters = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if data_dir in (proc / "cmdline").read_text():
                    postmasters.append(int(proc.name))
            except OSError:
                continue
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int(_stat(int(proc.name))[1]) in postmasters:  # ppid
                    total += _own_cpu(int(proc.name))
            except (OSError, IndexError, ValueError):
                continue
    return total + sum(_own_cpu(pid, children=True) for pid in postmasters)


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def drive(
    client: httpx.AsyncClient, requests: Sequence[tuple[str, str, dict[str, object] | None]], concurrency: int
) -> tuple[list[float], float, dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(requests)

    async def worker() -> None:
        for method, url, body in queue:
            started = time.perf_counter()
            response = await client.request(method, url, json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, statuses


async def measure(
    name: str,
    client: httpx.AsyncClient,
    requests: Sequence[tuple[str, str, dict[str, object] | None]],
    concurrency: int,
    *,
    server_pid: int,
    data_dir: str,
) -> None:
    """Drive `requests` and report latency, throughput and CPU per request.

    CPU is read from /proc: the server process (with its in-process job worker) and
    the embedded PostgreSQL, so it is not skewed by other load on the machine.
    """
    server, pg = _own_cpu(server_pid), postgres_cpu(data_dir)
    latencies, elapsed, statuses = await drive(client, requests, concurrency)
    await asyncio.sleep(1)  # let the job worker finish the texts these requests queued
    server, pg = _own_cpu(server_pid) - server, postgres_cpu(data_dir) - pg
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    n = len(latencies)
    print(
        f"{name:<18} n={n:<5} p50={p50:6.1f} ms  p95={p95:6.1f} ms  "
        f"max={max(latencies):6.1f} ms  {n / elapsed:7.1f} req/s  statuses={statuses}  "
        f"(seed target p95 < {SEED_TARGET_P95_MS} ms, aim < {AIM_P95_MS} ms: "
        f"{'met' if p95 < AIM_P95_MS else 'seed target met' if p95 < SEED_TARGET_P95_MS else 'MISSED'})\n"
        f"{'':<18} CPU per request: server {server / n * 1000:.1f} ms, PostgreSQL {pg / n * 1000:.1f} ms"
    )


async def run(n: int, concurrency: int, server_workers: int) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    key = "bench-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")} | {
            "HIBACHI_DATA_DIR": data_dir,
            "HIBACHI_ADMIN_API_KEY": key,
            "PUBLIC_BASE_URL": base,
        }
        # The server starts once, before any measurement; blocking here is harmless.
        proc = subprocess.Popen(  # noqa: ASYNC220
            [
                sys.executable,
                "-m",
                "hibachi.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(server_workers),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).parent.parent,
        )
        try:
            await wait_ready(base, proc)
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30
            ) as client:
                start_day = date.today() + timedelta(days=5)
                days = [start_day + timedelta(days=i) for i in range(150)]
                warm = [("GET", f"/v1/availability?location=bay-area&date={d}", None) for d in days[:50]]
                await drive(client, warm, concurrency)
                places = zip(itertools.cycle(["bay-area", "sacramento"]), itertools.cycle(days))
                avail = [
                    ("GET", f"/v1/availability?location={loc}&date={d}", None)
                    for loc, d in itertools.islice(places, n)
                ]
                print(
                    f"hibachi API benchmark: {n} requests per endpoint, concurrency {concurrency}, "
                    f"{os.cpu_count()} CPUs, server = {server_workers} uvicorn process(es) + embedded "
                    "PostgreSQL/Redis, load generator on the same machine"
                )
                pids: dict[str, Any] = {"server_pid": proc.pid, "data_dir": data_dir}
                await measure("availability", client, avail, concurrency, **pids)
                slots = itertools.cycle(
                    [
                        (loc, d, t)
                        for d in days
                        for loc in ("bay-area", "sacramento")
                        for t in ("12:00", "15:00", "18:00")
                    ]
                )
                bookings: list[tuple[str, str, dict[str, object] | None]] = []
                for i in range(n):
                    loc, d, t = next(slots)
                    bookings.append(
                        (
                            "POST",
                            "/v1/bookings",
                            {
                                "location": loc,
                                "customer_phone": f"+1408555{i % 10000:04d}",
                                "customer_name": "Bench Mark",
                                "event_date": d.isoformat(),
                                "start_time": t,
                                "adults": 12,
                                "children": 1,
                            },
                        )
                    )
                await measure("booking creation", client, bookings, concurrency, **pids)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server-workers", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.concurrency, args.server_workers))


if __name__ == "__main__":
    main()
