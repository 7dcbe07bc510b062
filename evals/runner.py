"""Runs suites: k trials per scenario, each on fresh seeded state at a fixed clock.

For every trial the runner resets the environment (see `evals.environment`), installs
a `ConversationEngine` with the chosen brain, the real tools and the scenario's
clock as the app's engine (webhooks and calls use it), drives the conversation
through the channel's driver with the scripted or simulated caller, then scores it:
assertions (`evals.assertions`), turns with latency and sentiment, tool calls,
transfers, cost and tokens from the conversation's records. A trial that crashes
records its error and counts as failed; the run goes on.

Drivers are picked by channel from `DRIVERS`; `voice-audio` is imported only when used.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from sqlalchemy import func, select

from agent.brain import Brain, Role
from agent.brains.deterministic import DeterministicBrain
from agent.brains.fallback import build_brain
from agent.cost import PriceTable
from agent.engine import ConversationEngine
from agent.models import Conversation, CostLine, Message, ToolCall
from agent.sentiment import build_scorer
from agent.tools.registry import ALL_TOOLS
from booking_tools.locations.service import location_for_agent_phone
from evals.assertions import Outcome, check, observe
from evals.caller import Caller, LLMCaller, ScriptedCaller, caller_client, describe
from evals.drivers.base import AgentTurn, Driver
from evals.environment import EvalEnvironment
from evals.results import RunResult, ToolCallRecord, TrialResult, TurnRecord
from evals.scenario import Press, Scenario, Suite
from hibachi.settings import Settings

BrainKind = Literal["deterministic", "llm"]
CallerKind = Literal["scripted", "llm"]


@dataclass(slots=True, frozen=True)
class TrialSpec:
    """What a driver factory needs: the environment, who calls whom."""

    env: EvalEnvironment
    scenario: Scenario
    caller_phone: str
    agent_phone: str


DriverFactory = Callable[[TrialSpec], AbstractAsyncContextManager[Driver]]


@asynccontextmanager
async def _sms(spec: TrialSpec) -> AsyncIterator[Driver]:
    from evals.drivers.sms import SmsDriver

    async with spec.env.ctx.sessions() as session:
        location = await location_for_agent_phone(session, phone=spec.agent_phone)
    provider = location.sms_provider if location is not None else "twilio"
    yield SmsDriver(
        env=spec.env, caller_phone=spec.caller_phone, agent_phone=spec.agent_phone, provider=provider
    )


@asynccontextmanager
async def _voice_text(spec: TrialSpec) -> AsyncIterator[Driver]:
    from evals.drivers.voice_text import VoiceTextDriver

    yield VoiceTextDriver(env=spec.env, caller_phone=spec.caller_phone, agent_phone=spec.agent_phone)


@asynccontextmanager
async def _voice_audio(spec: TrialSpec) -> AsyncIterator[Driver]:
    from evals.drivers.voice_audio import VoiceAudioDriver

    yield VoiceAudioDriver(env=spec.env, caller_phone=spec.caller_phone, agent_phone=spec.agent_phone)


DRIVERS: dict[str, DriverFactory] = {"sms": _sms, "voice-text": _voice_text, "voice-audio": _voice_audio}


class Progress(Protocol):
    """Told about the run as it goes (a live display, a log, or nothing)."""

    def started(self, total: int) -> None: ...
    def trial_started(self, suite: str, scenario: str, trial: int) -> None: ...
    def trial_finished(self, result: TrialResult) -> None: ...
    def finished(self) -> None: ...


class NoProgress:
    def started(self, total: int) -> None:
        pass

    def trial_started(self, suite: str, scenario: str, trial: int) -> None:
        pass

    def trial_finished(self, result: TrialResult) -> None:
        pass

    def finished(self) -> None:
        pass


class Runner:
    """Runs scenarios on `env` with the chosen brain and caller; `run` gives a `RunResult`."""

    def __init__(
        self,
        env: EvalEnvironment,
        *,
        brain: BrainKind = "deterministic",
        caller: CallerKind = "scripted",
        llm_settings: Settings | None = None,
        k: int = 1,
        progress: Progress | None = None,
    ) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.env = env
        self.brain_kind = brain
        self.caller_kind = caller
        self.llm_settings = llm_settings or env.ctx.settings
        if (brain == "llm" or caller == "llm") and not self.llm_settings.openai_api_key:
            raise ValueError(
                "--brain llm / --caller llm need OPENAI_API_KEY (and OPENAI_BASE_URL if not OpenAI)"
            )
        self.k = k
        self.progress = progress or NoProgress()
        self.prices = PriceTable.load(env.ctx.settings.hibachi_price_table)

    def build_brain(self) -> Brain:
        if self.brain_kind == "deterministic":
            return DeterministicBrain()
        return build_brain(self.llm_settings, DeterministicBrain())

    async def run(self, suites: list[Suite]) -> RunResult:
        started_at = datetime.now(UTC)
        await self.env.prepare()
        trials: list[TrialResult] = []
        self.progress.started(sum(len(s.scenarios) for s in suites) * self.k)
        try:
            for suite in suites:
                for scenario in suite.scenarios:
                    for index in range(self.k):
                        self.progress.trial_started(suite.suite, scenario.name, index)
                        result = await self.run_trial(suite, scenario, index)
                        trials.append(result)
                        self.progress.trial_finished(result)
        finally:
            self.progress.finished()
        return RunResult(
            suites=[s.suite for s in suites],
            brain=self.brain_kind,
            model=self.llm_settings.hibachi_llm_model if self.brain_kind == "llm" else None,
            k=self.k,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            git_commit=git_commit(),
            trials=trials,
        )

    async def run_trial(self, suite: Suite, scenario: Scenario, index: int) -> TrialResult:
        """One trial; an exception inside becomes `error` (and a failed trial), never a crash."""
        result = TrialResult(
            suite=suite.suite,
            scenario=scenario.name,
            category=scenario.category,
            channel=scenario.channel,
            trial=index,
            passed=False,
        )
        try:
            await self._trial(suite, scenario, result)
        except Exception as exc:
            result.passed = False
            result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        return result

    async def _trial(self, suite: Suite, scenario: Scenario, result: TrialResult) -> None:
        clock = suite.clock_for(scenario)
        phone = scenario.caller.phone
        await self.env.reset(clock=clock, setup=scenario.setup, caller_phone=phone)
        ctx = self.env.ctx
        engine = ConversationEngine(
            ctx,
            brain=self.build_brain(),
            tools=ALL_TOOLS,
            prices=self.prices,
            clock=lambda: clock,
            turn_timeout=ctx.settings.hibachi_llm_turn_timeout + 5,
            scorer=build_scorer(ctx.settings),
        )
        before = await observe(ctx, phone=phone, now=clock)
        caller = self._caller(scenario)
        spec = TrialSpec(self.env, scenario, phone, scenario.called_number)
        replies: list[str] = []
        async with self._engine_installed(engine):
            started = time.perf_counter()
            async with DRIVERS[scenario.channel](spec) as driver:
                try:
                    opening = await driver.open()
                    self._record(result, opening, replies)
                    ended = opening.ended
                    while not ended and (turn := await caller.next_turn(result.turns)) is not None:
                        result.turns.append(TurnRecord(role="customer", text=describe(turn)))
                        if isinstance(turn, Press):
                            answer = await driver.press(turn.press)
                        else:
                            answer = await driver.send(turn)
                        self._record(result, answer, replies)
                        ended = answer.ended or (
                            isinstance(caller, LLMCaller) and await _transferred(self.env)
                        )
                finally:
                    await driver.close()
            result.duration_s = time.perf_counter() - started
        after = await observe(ctx, phone=phone, now=clock)
        outcome = Outcome(scenario, before, after, replies, self.env.fakes.texts(), phone)
        result.failures = await check(ctx, outcome)
        await self._score(result, phone)
        result.transfer_reasons = [reason for reason, _, _ in after.transfers]
        result.passed = not result.failures

    def _caller(self, scenario: Scenario) -> Caller:
        if self.caller_kind == "llm" and scenario.goal:
            return LLMCaller(scenario, client=caller_client(self.llm_settings))
        if not scenario.turns:
            raise RuntimeError(f"{scenario.name} has only a goal: run it with --caller llm")
        return ScriptedCaller(scenario.turns)

    @staticmethod
    def _record(result: TrialResult, answer: AgentTurn, replies: list[str]) -> None:
        if answer.texts or answer.latency_s is not None:
            result.turns.append(TurnRecord(role="agent", text=answer.text, latency_s=answer.latency_s))
        replies.extend(answer.texts)

    @asynccontextmanager
    async def _engine_installed(self, engine: ConversationEngine) -> AsyncIterator[None]:
        extras = self.env.ctx.extras
        original = extras.get("engine")
        extras["engine"] = engine
        try:
            yield
        finally:
            await engine.close()
            extras["engine"] = original

    async def _score(self, result: TrialResult, phone: str) -> None:
        """Tool calls, cost, tokens and per-turn sentiment from the caller's conversations."""
        async with self.env.ctx.sessions() as session:
            mine = select(Conversation.id).where(Conversation.customer_phone == phone).scalar_subquery()
            calls = await session.execute(
                select(ToolCall.name, ToolCall.ok, ToolCall.error)
                .where(ToolCall.conversation_id.in_(mine))
                .order_by(ToolCall.id)
            )
            result.tool_calls = [ToolCallRecord(name=n, ok=ok, error=e) for n, ok, e in calls.all()]
            cost = (
                await session.execute(
                    select(
                        func.coalesce(func.sum(CostLine.usd), 0),
                        func.coalesce(func.sum(CostLine.prompt_tokens + CostLine.completion_tokens), 0),
                    ).where(CostLine.conversation_id.in_(mine))
                )
            ).one()
            result.cost_usd, result.tokens = float(cost[0]), int(cost[1])
            scores = list(
                await session.scalars(
                    select(Message.sentiment)
                    .where(Message.conversation_id.in_(mine), Message.role == Role.customer)
                    .order_by(Message.id)
                )
            )
        spoken = [t for t in result.turns if t.role == "customer" and not t.text.startswith("[pressed")]
        for turn, score in zip(spoken, scores, strict=False):
            turn.sentiment = score


async def _transferred(env: EvalEnvironment) -> bool:
    from agent.models import Transfer

    async with env.ctx.sessions() as session:
        return bool(await session.scalar(select(func.count()).select_from(Transfer)))


def git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if done.returncode == 0:
            return done.stdout.strip() or None
    return None
