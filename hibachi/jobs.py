"""The arq worker: job functions and cron schedule. Runs inside `hibachi serve` (embedded
mode) or alone as `hibachi worker` for scale-out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker

from hibachi.context import AppContext
from hibachi.embedded import redis_unix_path
from hibachi.settings import Settings

EVERY_10S = set(range(0, 60, 10))


def arq_redis_settings(settings: Settings) -> RedisSettings:
    assert settings.redis_url is not None
    path = redis_unix_path(settings.redis_url)
    if path is not None:
        return RedisSettings(unix_socket_path=path)
    return RedisSettings.from_dsn(settings.redis_url)


def functions() -> list[Any]:
    from agent.call_tasks import analyse_call_recording, forward_ringing_call
    from booking_tools.messaging.tasks import send_text

    return [send_text, forward_ringing_call, analyse_call_recording]


def cron_jobs() -> list[Any]:
    from agent.call_tasks import keep_ringcentral_webhook
    from agent.tasks import sweep_inbound
    from booking_tools.deposits.tasks import expire_deposits
    from booking_tools.loyalty.tasks import expire_loyalty_points
    from booking_tools.messaging.tasks import sweep_outbox
    from booking_tools.reminders.tasks import send_due_reminders

    return [
        cron(expire_deposits, second=EVERY_10S, run_at_startup=True, unique=True),
        cron(send_due_reminders, second=EVERY_10S, run_at_startup=True, unique=True),
        cron(sweep_outbox, second=EVERY_10S, unique=True),
        cron(sweep_inbound, second=EVERY_10S, unique=True),
        cron(expire_loyalty_points, minute=0, second=0, unique=True),
        cron(keep_ringcentral_webhook, minute={5, 35}, second=0, run_at_startup=True, unique=True),
    ]


def build_worker(app: AppContext, *, burst: bool = False, handle_signals: bool = False) -> Worker:
    """A worker sharing `app`'s connections (jobs find it as ctx['app'])."""
    return Worker(
        functions=functions(),
        cron_jobs=cron_jobs(),
        redis_pool=app.queue,
        ctx={"app": app},
        burst=burst,
        handle_signals=handle_signals,
        poll_delay=0.2,
        max_tries=6,
        keep_result=60,
    )


@contextlib.asynccontextmanager
async def worker_running(app: AppContext) -> AsyncIterator[None]:
    """Run the job worker in this process for the duration of the block."""
    worker = build_worker(app)
    task = asyncio.create_task(worker.async_run(), name="arq-worker")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()
