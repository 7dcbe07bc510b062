"""Run the real `hibachi serve` command as a subprocess (embedded PostgreSQL and Redis)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    admin_key: str
    log: Path
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(
    data_dir: Path,
    *,
    admin_key: str = "live-admin-key",
    timeout: float = 180,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[LiveServer]:
    """Start `hibachi serve [--workers N]` on a free port with no DATABASE_URL/REDIS_URL; stop it after."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environ |= {
        "HIBACHI_DATA_DIR": str(data_dir),
        "HIBACHI_ADMIN_API_KEY": admin_key,
        "PUBLIC_BASE_URL": base,
        **(env or {}),
    }
    log = data_dir / "serve.log"
    hibachi = Path(sys.executable).parent / "hibachi"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(hibachi), "serve", "--port", str(port), "--workers", str(workers)],
            env=environ,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"hibachi serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"hibachi serve not ready:\n{log.read_text()[-3000:]}")
                time.sleep(0.25)
            yield LiveServer(base_url=base, admin_key=admin_key, log=log, process=proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
