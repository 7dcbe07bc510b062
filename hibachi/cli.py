"""`hibachi` command line: serve, worker, seed, migrate, chat, sms, call, eval."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from collections.abc import Coroutine
from types import FrameType
from typing import Annotated, Any

import typer

from evals.cli import eval_app
from hibachi.embedded import EmbeddedServers
from hibachi.settings import Settings

log = logging.getLogger(__name__)
app = typer.Typer(help="My Hibachi voice & messaging agent and back office.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop the embedded servers.

    uvicorn re-raises the signal it caught after its own shutdown; with the default
    handler that would kill the process before the embedded servers are stopped.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _run(main: Coroutine[Any, Any, None], servers: EmbeddedServers) -> None:
    """Run `main` to the end (Ctrl-C ends it quietly), then stop the embedded servers."""
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        pass
    finally:
        servers.stop()


def _ask_for_slice(settings: Settings) -> None:
    """This process's scheduler slice (hibachi.sched): its threads now, and what it starts later
    (threads, `--workers` processes, embedded PostgreSQL and Redis) inherit it."""
    from hibachi.sched import SliceUnsupported, set_process_slice

    if settings.hibachi_sched_slice_us:
        try:
            set_process_slice(settings.hibachi_sched_slice_us * 1000, os.getpid())
        except SliceUnsupported as exc:
            log.info("scheduler slice left to the kernel: %s", exc)


def _prepare(settings: Settings) -> tuple[Settings, EmbeddedServers]:
    """Resolve embedded servers, migrate, and seed the reference business on first start."""
    from hibachi.embedded import resolve
    from hibachi.migrate import upgrade

    # Demo customers only on the self-contained embedded database, never on a real one.
    demo = settings.database_url is None
    settings, servers = resolve(settings)
    upgrade(settings.async_database_url)
    asyncio.run(_seed(settings, demo=demo))
    return settings, servers


async def _seed(settings: Settings, *, demo: bool, knowledge: bool = False) -> None:
    """Seed the reference business; with `knowledge`, also ingest its documents (serve does that at start)."""
    from booking_tools.seed import seed
    from hibachi.context import utcnow
    from hibachi.db import create_engine, create_sessionmaker, unit_of_work
    from knowledge.embeddings import build_embedder
    from knowledge.ingest import ingest

    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            await seed(session, now=utcnow(), demo=demo)
            if knowledge:
                report = await ingest(session, embedder=build_embedder(settings))
                typer.echo(f"knowledge base: {report}")
    finally:
        await engine.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(help="web worker processes (one per core)")] = 1,
) -> None:
    """Run the HTTP/WebSocket server (embedded PostgreSQL and Redis unless configured)."""
    import uvicorn

    from hibachi.app import configure_logging, create_app

    configure_logging()
    _exit_on_sigterm()
    settings = Settings()
    _ask_for_slice(settings)
    settings, servers = _prepare(settings)
    try:
        if workers > 1:
            # Each worker writes its metrics here and /metrics sums them (see hibachi.app.metrics_text).
            metrics_dir = settings.hibachi_data_dir.resolve() / "metrics"
            shutil.rmtree(metrics_dir, ignore_errors=True)  # counts from an earlier run are not ours
            metrics_dir.mkdir(parents=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
            uvicorn.run(
                "hibachi.asgi:app",
                host=host,
                port=port,
                workers=workers,
                log_level="info",
                access_log=False,
                timeout_graceful_shutdown=int(settings.hibachi_shutdown_grace_seconds),
            )
        else:
            uvicorn.run(
                create_app(settings),
                host=host,
                port=port,
                log_level="info",
                access_log=False,
                timeout_graceful_shutdown=int(settings.hibachi_shutdown_grace_seconds),
            )
    finally:
        servers.stop()


@app.command()
def worker() -> None:
    """Run the job worker alone (reminders, deposit expiry, text outbox) for scale-out."""
    from hibachi.app import configure_logging, start
    from hibachi.jobs import build_worker

    configure_logging()
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

    _run(run(), servers)


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
        asyncio.run(_seed(settings, demo=demo, knowledge=True))
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


@app.command()
def chat(
    phone: Annotated[
        str, typer.Option(help="the customer's number (their identity, as a carrier reports it)")
    ],
    to: Annotated[
        str | None, typer.Option(help="the agent number they text (default: the Bay Area line)")
    ] = None,
) -> None:
    """Text with the agent in the terminal as `phone`, through the same brain and tools as SMS."""
    from agent.engine import ConversationEngine, InboundText
    from booking_tools.customers.phone import to_e164
    from booking_tools.locations.service import list_locations
    from hibachi.app import start
    from hibachi.jobs import worker_running

    logging.basicConfig(level=logging.WARNING)
    settings, servers = _prepare(Settings())
    customer = to_e164(phone)

    async def run() -> None:
        ctx = await start(settings)
        engine: ConversationEngine = ctx.extras["engine"]
        try:
            async with ctx.sessions() as session:
                agent_phone = to_e164(to) if to else (await list_locations(session))[0].agent_phone
            typer.echo(f"Texting {agent_phone} as {customer}. Ctrl-D to quit.")
            async with worker_running(ctx):
                while True:
                    try:
                        line = await asyncio.to_thread(input, "you> ")
                    except EOFError:
                        break
                    if not line.strip():
                        continue
                    accepted = await engine.accept_text(
                        InboundText(
                            provider="cli", customer_phone=customer, agent_phone=agent_phone, text=line
                        )
                    )
                    for reply in await engine.drain(accepted.conversation_id):
                        typer.echo(f"agent> {reply.text}")
        finally:
            await engine.close()
            await ctx.close()

    _run(run(), servers)


@app.command()
def sms(
    text: Annotated[str, typer.Argument(help="the message body")],
    from_: Annotated[str, typer.Option("--from", help="the customer's number")],
    to: Annotated[str, typer.Option(help="the agent number (the location's line)")],
    url: Annotated[str, typer.Option(help="where the server listens")] = "http://127.0.0.1:8000",
) -> None:
    """Post a correctly signed Twilio SMS webhook to a running server and print the reply."""
    from telephony.twilio.client_sim import post_sms, sms_webhook_form, twiml_messages

    settings = Settings()
    form = sms_webhook_form(account_sid=settings.twilio_account_sid, from_phone=from_, to_phone=to, body=text)
    response = post_sms(
        server_url=url,
        public_base_url=settings.public_base_url,
        auth_token=settings.twilio_auth_token,
        form=form,
    )
    if response.status_code != 200:
        typer.echo(f"error {response.status_code}: {response.text}", err=True)
        raise typer.Exit(1)
    replies = twiml_messages(response.text)
    for reply in replies:
        typer.echo(reply)
    if not replies:
        typer.echo("(no reply in the webhook response; the agent will answer by text)")


@app.command()
def call(
    from_: Annotated[str, typer.Option("--from", help="the caller's number")],
    to: Annotated[str, typer.Option(help="the agent number called (the location's line)")],
    say: Annotated[list[str], typer.Option(help="what the caller says, one turn each; repeat")],
    url: Annotated[str, typer.Option(help="where the server listens")] = "http://127.0.0.1:8000",
) -> None:
    """Place a simulated call (Twilio webhook + Media Streams, synthesised caller audio) and print it."""
    from booking_tools.customers.phone import to_e164
    from telephony.twilio.call_cli import latency_breakdown, place_call

    logging.basicConfig(level=logging.WARNING)
    settings = Settings()
    turns = asyncio.run(
        place_call(
            server_url=url,
            public_base_url=settings.public_base_url,
            auth_token=settings.twilio_auth_token,
            account_sid=settings.twilio_account_sid,
            from_phone=from_,
            to_phone=to,
            lines=say,
            echo=typer.echo,
        )
    )
    latencies = sorted(t.latency_ms for t in turns if t.latency_ms is not None)
    if latencies:
        typer.echo(
            f"turns: {len(turns)}; speech end -> first agent audio: "
            f"median {latencies[len(latencies) // 2]:.0f} ms, max {latencies[-1]:.0f} ms"
        )
    if settings.hibachi_admin_api_key:
        breakdown = asyncio.run(
            latency_breakdown(server_url=url, api_key=settings.hibachi_admin_api_key, phone=to_e164(from_))
        )
        for line in breakdown:
            typer.echo(line)


if __name__ == "__main__":
    app()
