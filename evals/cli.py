"""`hibachi eval run SUITE... --k 4 --brain deterministic|llm --out DIR`.

The command never touches the database `hibachi serve` uses: it starts its own embedded
PostgreSQL and Redis under `<HIBACHI_DATA_DIR>/evals` (whatever `DATABASE_URL` says),
migrates, ingests the knowledge base once, and starts the provider fakes (Twilio,
RingCentral, Stripe) that the run's texts and payment links really go to. The LLM brain
(and the simulated caller) use `OPENAI_API_KEY` / `OPENAI_BASE_URL` / `HIBACHI_LLM_MODEL`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hibachi.settings import Settings

if TYPE_CHECKING:  # the rest loads when a command runs, so `hibachi --help` stays quick
    from rich.console import Console

    from evals.environment import ProviderFakes
    from evals.results import GroupScore, RunResult
    from evals.runner import BrainKind, CallerKind, Progress
    from evals.scenario import Suite

eval_app = typer.Typer(help="Eval suites: scenarios against the agent, scored like tau-bench.")

AGENT_NUMBERS = ("+14085550199", "+19165550199")
RC_JWT = "evals-ringcentral-jwt"
RC_VERIFICATION_TOKEN = "evals-ringcentral-verification-token"


@eval_app.callback()
def _group() -> None:
    """Run eval suites (`run`), compare runs (`compare`), analyse stored conversations (`transcripts`)."""


@eval_app.command()
def run(
    suites: Annotated[
        list[str], typer.Argument(help="bundled suite names (core, adversarial, ...) or YAML paths")
    ],
    k: Annotated[int, typer.Option(help="trials per scenario (pass^k needs k >= 1)")] = 1,
    brain: Annotated[str, typer.Option(help="deterministic | llm")] = "deterministic",
    caller: Annotated[
        str, typer.Option(help="scripted | llm (an LLM plays callers that have a goal)")
    ] = "scripted",
    out: Annotated[Path, typer.Option(help="where results.json and the report go")] = Path("eval-results"),
) -> None:
    """Run suites k times per scenario on fresh state; write results.json and the HTML report."""
    if brain not in ("deterministic", "llm") or caller not in ("scripted", "llm"):
        raise typer.BadParameter("--brain is deterministic or llm; --caller is scripted or llm")
    from rich.console import Console

    from evals.scenario import load_suite

    logging.basicConfig(level=logging.WARNING)
    loaded = [load_suite(name) for name in suites]
    console = Console(stderr=True)
    progress: Progress
    if console.is_terminal:
        from evals.progress import LiveProgress

        progress = LiveProgress(console)
    else:
        from evals.progress import LineProgress

        progress = LineProgress(sys.stderr)
    result = run_suites(loaded, k=k, brain=brain, caller=caller, progress=progress)  # type: ignore[arg-type]  # checked above
    path = result.save(out)
    typer.echo(f"results: {path}")
    try:
        from evals.report import write_report
    except ImportError:
        typer.echo("(no HTML report: evals.report is not available)")
    else:
        typer.echo(f"report: {write_report(result, out)}")
    print_summary(result, Console())
    if any(not trial.passed for trial in result.trials):
        raise typer.Exit(1)


@eval_app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="the earlier run: its --out directory or results.json")],
    candidate: Annotated[Path, typer.Argument(help="the newer run: its --out directory or results.json")],
) -> None:
    """Show what changed between two runs; exit 1 if any scenario regressed."""
    from evals.commands import compare_command

    code = compare_command(baseline, candidate, color=sys.stdout.isatty())
    if code:
        raise typer.Exit(code)


@eval_app.command()
def transcripts(
    since: Annotated[str, typer.Option(help="how far back: 30m, 24h, 7d or 2w")] = "7d",
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """Analytics over stored conversations (the database `hibachi serve` uses)."""
    from evals.commands import transcripts_command
    from hibachi.embedded import resolve
    from hibachi.migrate import upgrade

    logging.basicConfig(level=logging.WARNING)
    settings, servers = resolve(Settings())
    try:
        upgrade(settings.async_database_url)
        asyncio.run(transcripts_command(settings, since, as_json=as_json))
    finally:
        servers.stop()


def run_suites(
    suites: list[Suite], *, k: int, brain: BrainKind, caller: CallerKind, progress: Progress
) -> RunResult:
    """Start the eval's own servers and fakes, run, and stop everything again."""
    with eval_services(Settings()) as (settings, fakes):
        return asyncio.run(_run(settings, fakes, suites, k=k, brain=brain, caller=caller, progress=progress))


@contextmanager
def eval_services(base: Settings) -> Iterator[tuple[Settings, ProviderFakes]]:
    """Embedded PostgreSQL/Redis under `<data dir>/evals` and the provider fakes; yields the settings."""
    from evals.environment import ProviderFakes
    from hibachi.embedded import resolve
    from hibachi.migrate import upgrade
    from telephony.fakes import FakeRingCentral, FakeTwilio
    from telephony.fakes.stripe_server import FakeStripe

    with ExitStack() as stack:
        twilio = stack.enter_context(FakeTwilio())
        ringcentral = stack.enter_context(FakeRingCentral(jwt=RC_JWT, phone_numbers=AGENT_NUMBERS))
        stripe = stack.enter_context(FakeStripe())
        data_dir = (base.hibachi_data_dir / "evals").resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        settings = base.model_copy(
            update={
                "hibachi_data_dir": data_dir,
                "database_url": None,  # never the database `hibachi serve` uses
                "redis_url": None,
                "hibachi_run_worker": False,
                "hibachi_admin_api_key": None,
                "twilio_api_base": twilio.base_url,
                "ringcentral_server_url": ringcentral.base_url,
                "ringcentral_client_id": ringcentral.client_id,
                "ringcentral_client_secret": ringcentral.client_secret,
                "ringcentral_jwt": RC_JWT,
                "ringcentral_verification_token": RC_VERIFICATION_TOKEN,
                "stripe_api_key": stripe.api_key,
                "stripe_webhook_secret": stripe.webhook_secret,
                "stripe_api_base": stripe.base_url,
            }
        )
        settings, servers = resolve(settings)
        stack.callback(servers.stop)
        upgrade(settings.async_database_url)
        yield settings, ProviderFakes(twilio, ringcentral, stripe)


async def _run(
    settings: Settings,
    fakes: ProviderFakes,
    suites: list[Suite],
    *,
    k: int,
    brain: BrainKind,
    caller: CallerKind,
    progress: Progress,
) -> RunResult:
    from evals.environment import EvalEnvironment
    from evals.runner import Runner
    from hibachi.app import create_app, start

    ctx = await start(settings)
    try:
        app = create_app(settings, context=ctx)
        app.state.ctx = ctx  # in-process requests skip the lifespan that would set it
        env = EvalEnvironment(ctx=ctx, app=app, fakes=fakes)
        return await Runner(env, brain=brain, caller=caller, k=k, progress=progress).run(suites)
    finally:
        await ctx.extras["engine"].close()
        await ctx.close()


def print_summary(result: RunResult, console: Console) -> None:
    """pass^1 and pass^k overall, by suite and by category."""
    from rich.table import Table

    summary = result.summary()
    k = result.k
    table = Table(title=f"{', '.join(result.suites)}: brain {result.brain}, k={k}")
    columns = ("group", "scenarios", "trials", "pass^1", *([f"pass^{k}"] if k > 1 else []))
    for column in columns:
        table.add_column(column, justify="left" if column == "group" else "right")

    def row(name: str, score: GroupScore) -> None:
        rates = (f"{score.pass_1:.1%}", f"{score.pass_k:.1%}")[: len(columns) - 3]
        table.add_row(name, str(score.scenarios), str(score.trials), *rates)

    row("overall", summary.overall)
    for name, score in summary.by_suite.items():
        row(f"suite {name}", score)
    for name, score in summary.by_category.items():
        row(f"  {name}", score)
    console.print(table)
    latency = (
        f"latency p50 {summary.latency_p50_s:.3f} s, p95 {summary.latency_p95_s:.3f} s; "
        if summary.latency_p50_s is not None and summary.latency_p95_s is not None
        else ""
    )
    console.print(
        f"{latency}cost per conversation ${summary.cost_per_conversation_usd:.4f}; "
        f"transfer rate {summary.transfer_rate:.0%}"
    )
    failed = [t for t in result.trials if not t.passed]
    for trial in failed:
        why = "; ".join(trial.failures) or (trial.error or "").splitlines()[0]
        console.print(f"[red]FAIL[/red] {trial.suite}/{trial.scenario} #{trial.trial}: {why}")


if __name__ == "__main__":
    eval_app()
