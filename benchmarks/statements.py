"""Per-booking cost in-process: database round trips and CPU time of `POST /v1/bookings`.

Runs the app in this process (no HTTP server, no job worker) on a throwaway embedded
PostgreSQL and Redis, counts what each booking sends to PostgreSQL with SQLAlchemy
event listeners, and measures this process's CPU time per booking. The CPU figure
includes the in-process httpx client (a roughly constant ~1 ms), so compare it
between versions rather than reading it as the server's absolute cost.

    .venv/bin/python -m benchmarks.statements [--requests 300] [--show]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from booking_tools.admin.models import Role
from booking_tools.admin.service import create_api_key
from booking_tools.seed import seed_locations
from hibachi.app import create_app, start
from hibachi.db import unit_of_work
from hibachi.embedded import resolve
from hibachi.migrate import upgrade
from hibachi.settings import Settings


def booking_body(i: int, loc: str, day: date, at: str) -> dict[str, object]:
    return {
        "location": loc,
        "customer_phone": f"+1408555{i % 10000:04d}",
        "customer_name": "Bench Mark",
        "event_date": day.isoformat(),
        "start_time": at,
        "adults": 12,
        "children": 1,
    }


async def run(n: int, show: bool, settings: Settings) -> None:
    if True:
        ctx = await start(settings)
        try:
            async with unit_of_work(ctx.sessions) as session:
                await seed_locations(session)
                _, key = await create_api_key(session, name="bench", role=Role.staff)
            counts: Counter[str] = Counter()
            seen: list[str] = []

            def on_execute(*args: Any) -> None:
                counts["statement"] += 1
                seen.append(" ".join(str(args[2]).split())[:150])

            def on_event(name: str) -> Any:
                def listener(*_: Any) -> None:
                    counts[name] += 1
                    seen.append(name.upper())

                return listener

            engine = ctx.engine.sync_engine
            event.listen(engine, "before_cursor_execute", on_execute)
            event.listen(engine, "begin", on_event("begin"))
            event.listen(engine, "commit", on_event("commit"))
            event.listen(engine, "rollback", on_event("rollback"))
            event.listen(engine.pool, "checkout", on_event("checkout"))
            app = create_app(settings, context=ctx)
            app.state.ctx = ctx  # no lifespan under ASGITransport
            days = [date.today() + timedelta(days=5 + i) for i in range(150)]
            slots = itertools.cycle(
                [
                    (loc, d, t)
                    for d in days
                    for loc in ("bay-area", "sacramento")
                    for t in ("12:00", "15:00", "18:00")
                ]
            )
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://bench",
                headers={"Authorization": f"Bearer {key}"},
            ) as client:
                for i in range(20):  # warm caches (statement cache, prepared statements, principal)
                    r = await client.post("/v1/bookings", json=booking_body(i, *next(slots)))
                    assert r.status_code == 201, r.text
                counts.clear()
                seen.clear()
                statuses: Counter[int] = Counter()
                cpu, wall = time.process_time(), time.perf_counter()
                for i in range(20, 20 + n):
                    r = await client.post("/v1/bookings", json=booking_body(i, *next(slots)))
                    statuses[r.status_code] += 1
                    if i == 20 and show:
                        print("one booking:\n  " + "\n  ".join(seen))
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            round_trips = ("statement", "begin", "commit", "rollback")
            pings = 3 if ctx.engine.pool._pre_ping else 0  # private: the pool has no public accessor
            per = {k: v / n for k, v in sorted(counts.items())}
            print(f"{n} bookings, statuses {dict(statuses)}")
            print("per booking: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))
            print(
                "round trips to PostgreSQL per booking (statements, BEGIN, COMMIT; a pre-ping is three: "
                f"BEGIN, ping, ROLLBACK): "
                f"{(sum(counts[k] for k in round_trips) + pings * counts['checkout']) / n:.2f}"
            )
            print(
                f"CPU per booking (app + in-process client): {cpu / n * 1000:.2f} ms; "
                f"wall {wall / n * 1000:.2f} ms"
            )
        finally:
            await ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--show", action="store_true", help="print the statements of one booking")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hibachi-bench-") as tmp:
        data_dir = Path(tmp)
        data_dir.chmod(0o755)
        settings, servers = resolve(
            Settings(_env_file=None, hibachi_data_dir=data_dir, hibachi_run_worker=False)
        )
        try:
            upgrade(settings.async_database_url)
            asyncio.run(run(args.requests, args.show, settings))
        finally:
            servers.stop()


if __name__ == "__main__":
    main()
