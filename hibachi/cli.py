"""`hibachi` command line: serve, worker, seed, migrate."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Annotated

import typer

from hibachi.embedded import EmbeddedServers
from hibachi.settings import Settings

app = typer.Typer(help="My Hibachi voice & messaging agent and back office.", no_args_is_help=True)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop the embedded servers.

    uvicorn re-raises the signal it caught after its own shutdown; with the default
    handler that would kill the process before the embedded servers are stopped.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _prepare(settings: Settings) -> tuple[Settings, EmbeddedServers]:
    # Demo customers only on the self-contained embedded database, never on a real one.
    demo = settings.database_url is None
    """Resolve embedded servers, migrate, and seed the reference business on first start."""
    from hibachi.embedded import resolve
    from hibachi.migrate import upgrade

    settings, servers = resolve(settings)
    upgrade(settings.async_database_url)
    asyncio.run(_seed(settings, demo=demo))
    return settings, servers


async def _seed(settings: Settings, *, demo: bool) -> None:
    from booking_tools.seed import seed
    from hibachi.context import utcnow
    from hibachi.db import create_engine, create_sessionmaker, unit_of_work

    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            await seed(session, now=utcnow(), demo=demo)
    finally:
        await engine.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(help="web worker processes (needs external DB/Redis)")] = 1,
) -> None:
    """Run the HTTP/WebSocket server (embedded PostgreSQL and Redis unless configured)."""
    import uvicorn

    from hibachi.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _exit_on_sigterm()
    settings, servers = _prepare(Settings())
    try:
        if workers > 1:
            uvicorn.run("hibachi.asgi:app", host=host, port=port, workers=workers, log_level="info")
        else:
            uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    finally:
        servers.stop()


@app.command()
def worker() -> None:
    """Run the job worker alone (reminders, deposit expiry, text outbox) for scale-out."""
    from hibachi.app import start
    from hibachi.jobs import build_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _exit_on_sigterm()
    settings, servers = _prepare(Settings())

    async def run() -> None:
        ctx = await start(settings)
        job_worker = build_worker(ctx, handle_signals=False)
        try:
            await job_worker.async_run()
        finally:
            await job_worker.close()
            await ctx.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    finally:
        servers.stop()


@app.command()
def seed(
    demo: Annotated[bool, typer.Option(help="also load demo customers with loyalty history")] = True,
) -> None:
    """Load the reference business (idempotent)."""
    from hibachi.embedded import resolve
    from hibachi.migrate import upgrade

    settings, servers = resolve(Settings())
    try:
        upgrade(settings.async_database_url)
        asyncio.run(_seed(settings, demo=demo))
        typer.echo("seeded the reference business")
    finally:
        servers.stop()


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    from hibachi.embedded import resolve
    from hibachi.migrate import upgrade

    settings, servers = resolve(Settings())
    try:
        upgrade(settings.async_database_url)
        typer.echo("database is at the newest schema")
    finally:
        servers.stop()


if __name__ == "__main__":
    app()
