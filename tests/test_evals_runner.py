"""The eval harness end to end: the bundled suites pass with the deterministic brain, failed
expectations and crashes are reported, every trial starts from the same fresh state, the
LLM brain and the simulated caller run against the local OpenAI server, and `eval run`
writes its results file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from evals.environment import EvalEnvironment, ProviderFakes
from evals.results import RunResult, TrialResult
from evals.runner import Runner
from evals.scenario import Suite, load_suite, parse_suite
from hibachi.context import AppContext
from hibachi.settings import Settings
from telephony.fakes import FakeOpenAI, FakeRingCentral, FakeTwilio
from telephony.fakes.openai_server import DEFAULT_API_KEY, Reply, ToolCallSpec

ROOT = Path(__file__).resolve().parents[1]
HEAD = 'suite: {name}\nclock: "2026-11-20T11:00:00-08:00"\nscenarios:\n'


@pytest.fixture
def env(
    app_ctx: AppContext, app: Any, fake_twilio: FakeTwilio, fake_ringcentral: FakeRingCentral
) -> EvalEnvironment:
    return EvalEnvironment(ctx=app_ctx, app=app, fakes=ProviderFakes(fake_twilio, fake_ringcentral))


@pytest.fixture
def llm_settings(settings: Settings, fake_openai: FakeOpenAI) -> Settings:
    return settings.model_copy(
        update={"openai_api_key": DEFAULT_API_KEY, "openai_base_url": fake_openai.base_url}
    )


def report(trials: list[TrialResult]) -> str:
    """Every failed trial with its failures, error and transcript."""
    lines = []
    for trial in trials:
        if trial.passed:
            continue
        lines.append(f"--- {trial.suite}/{trial.scenario} #{trial.trial}")
        lines += [f"  failed: {failure}" for failure in trial.failures]
        if trial.error:
            lines.append(f"  error: {trial.error}")
        lines += [f"  {turn.role}: {turn.text}" for turn in trial.turns]
    return "\n".join(lines)


def suite(name: str, scenarios: str) -> Suite:
    return parse_suite(HEAD.format(name=name) + scenarios)


@pytest.mark.parametrize("name", ["core", "adversarial"])
async def test_bundled_suite_passes_with_the_deterministic_brain(env: EvalEnvironment, name: str) -> None:
    run = await Runner(env).run([load_suite(name)])
    assert run.trials
    assert all(t.passed for t in run.trials), report(run.trials)
    assert all(any(turn.role == "customer" for turn in t.turns) for t in run.trials)


WRONG = """
  - name: booked-twelve-expects-thirteen
    category: booking
    channel: sms
    caller: {phone: "+14085550140"}
    turns: ["Book December 5 at 6pm for 12 adults, my name is Dana Cruz", "yes"]
    expect:
      booking: {date: 2026-12-05, time: "18:00", adults: 13}
      transfer: required
      replies_include: ["re:free (dessert|wine)"]
  - name: setup-crashes
    category: booking
    caller: {phone: "+14085550141"}
    setup:
      bookings: [{name: Nobody, date: 2026-12-05, location: atlantis}]
    turns: ["hi"]
    expect: {no_new_booking: true}
  - name: still-runs-after-a-crash
    category: faq
    channel: voice-text
    caller: {phone: "+14085550142"}
    turns: ["do you bring the grill?"]
    expect: {replies_include: [propane]}
"""


async def test_a_wrong_expectation_and_a_crash_are_reported_and_the_run_goes_on(env: EvalEnvironment) -> None:
    run = await Runner(env).run([suite("wrong", WRONG)])
    wrong, crashed, fine = run.trials

    assert not wrong.passed
    assert wrong.error is None
    assert wrong.failures == [
        "booking: expected adults=13, got 12",
        "transfer: required, but the agent never handed off to staff",
        "replies_include: no reply matched 're:free (dessert|wine)'",
    ]
    assert not crashed.passed
    assert crashed.error is not None
    assert "LocationNotFound" in crashed.error
    assert fine.passed, report([fine])
    assert run.summary().overall.pass_1 == pytest.approx(1 / 3)


FRESH = """
  - name: books-the-last-place
    category: booking
    channel: sms
    location: sacramento
    caller: {phone: "+19165550141"}
    setup:
      customers: [{phone: "+19165550141", name: Chris Wong, points: 1250}]
      bookings: [{phone: "+19165550150", name: Other Guest, location: sacramento, date: 2026-12-05}]
    turns: ["Book December 5 at 6pm for 12 adults", "yes"]
    expect:
      booking: {location: sacramento, date: 2026-12-05, time: "18:00", adults: 12, name: Chris Wong}
      loyalty_points: 1250
      deposit_link_sent: true
      texts: [{to: caller, count: 3}]
"""


async def test_every_trial_of_a_scenario_starts_from_the_same_fresh_state(env: EvalEnvironment) -> None:
    # Sacramento has two chefs and setup takes one: a leftover booking from an earlier trial
    # would fill the slot; leftover points, texts or setup would break the other checks.
    run = await Runner(env, k=3).run([suite("fresh", FRESH)])

    assert [t.passed for t in run.trials] == [True, True, True], report(run.trials)
    codes = [t.turns[-1].text.split("code is ")[1][:8] for t in run.trials]
    assert len(set(codes)) == 3
    transcripts = [
        [turn.text.replace(code, "CODE") for turn in t.turns]
        for t, code in zip(run.trials, codes, strict=True)
    ]
    assert transcripts[0] == transcripts[1] == transcripts[2]
    assert run.summary().overall.pass_k == 1.0


LLM = """
  - name: llm-books-by-text
    category: booking
    channel: sms
    caller: {phone: "+14085550160"}
    turns: ["Book December 12 at 6pm for 14 adults and a kid, I'm Ana Ruiz"]
    expect:
      booking: {date: 2026-12-12, time: "18:00", adults: 14, children: 1, name: Ana Ruiz}
      deposit_link_sent: true
      replies_include: ["You're booked, Ana"]
  - name: llm-answers-by-voice
    category: faq
    channel: voice-text
    caller: {phone: "+14085550161"}
    turns: ["Do you bring the grill?"]
    expect:
      replies_include: ["brings the grill"]
      tools_called: [faq_search]
      transfer: forbidden
"""


async def test_the_llm_brain_runs_end_to_end_against_the_local_model_server(
    env: EvalEnvironment, llm_settings: Settings, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    booking = {"event_date": "2026-12-12", "start_time": "18:00", "adults": 14, "children": 1}
    fake_openai.script(
        Reply(tool_calls=[ToolCallSpec("check_availability", {"event_date": "2026-12-12"})]),
        Reply(tool_calls=[ToolCallSpec("create_booking", {**booking, "customer_name": "Ana Ruiz"})]),
        Reply(text="You're booked, Ana! I've texted you the $100 deposit link."),
        Reply(tool_calls=[ToolCallSpec("faq_search", {"question": "Do you bring the grill?"})]),
        Reply(text="Yes, the chef brings the grill, the propane and all the food."),
    )
    run = await Runner(env, brain="llm", llm_settings=llm_settings).run([suite("llm", LLM)])
    loaded = RunResult.load(run.save(tmp_path))

    assert all(t.passed for t in loaded.trials), report(loaded.trials)
    assert (loaded.brain, loaded.model) == ("llm", llm_settings.hibachi_llm_model)
    booked, answered = loaded.trials
    assert [c.name for c in booked.tool_calls] == ["check_availability", "create_booking"]
    assert booked.tokens > 0
    assert booked.cost_usd > 0
    assert [c.name for c in answered.tool_calls] == ["faq_search"]
    assert answered.channel == "voice-text"
    assert len(fake_openai.chat_requests) == 5


GOAL = """
  - name: simulated-caller-asks-about-the-grill
    category: faq
    channel: sms
    caller:
      phone: "+14085550162"
      persona: First-time customer who rents a small flat
      wants: To know whether they need their own grill
    goal: Find out if the chef brings the grill.
    expect:
      replies_include: [propane]
"""


async def test_the_simulated_caller_speaks_lines_from_the_model_and_stops_on_its_goal(
    env: EvalEnvironment, llm_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Reply(text="hey, do you guys bring the grill?"), Reply(text="###STOP###"))
    run = await Runner(env, caller="llm", llm_settings=llm_settings).run([suite("goal", GOAL)])

    [trial] = run.trials
    assert trial.passed, report(run.trials)
    assert [t.role for t in trial.turns] == ["customer", "agent"]
    assert trial.turns[0].text == "hey, do you guys bring the grill?"
    first, second = fake_openai.chat_requests
    system = first["messages"][0]["content"]
    assert "small flat" in system
    assert "Find out if the chef brings the grill." in system
    # Roles swap for the simulated caller: the agent's reply is its "user" message.
    assert second["messages"][-1] == {"role": "user", "content": trial.turns[1].text}


SMALL = """
  - name: cli-books-by-text
    category: booking
    channel: sms
    location: sacramento
    caller: {phone: "+19165550141"}
    turns: ["Book Saturday December 12 at 3pm for 20 adults, my name is Chris Wong", "yes"]
    expect:
      booking: {location: sacramento, date: 2026-12-12, time: "15:00", adults: 20, status: pending_deposit}
      deposit_link_sent: true
  - name: cli-cancels-by-voice
    category: cancel
    channel: voice-text
    location: bay-area
    caller: {phone: "+14085550160"}
    setup:
      bookings: [{code: MHCANCA2, name: Kim Nguyen, date: 2026-12-12}]
    turns: ["cancel my booking", "yes"]
    expect:
      bookings_by_code: {MHCANCA2: {status: cancelled, deposit: refunded}}
"""


def test_eval_run_command_writes_results_on_its_own_servers(tmp_path: Path) -> None:
    suite_file = tmp_path / "small.yaml"
    suite_file.write_text(HEAD.format(name="small") + SMALL)
    # Not under pytest's 0700 temp root: the embedded server runs as its own OS user.
    data_dir = Path(tempfile.mkdtemp(prefix="hibachi-evals-cli-"))
    data_dir.chmod(0o755)
    out = tmp_path / "out"
    environ = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY")
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hibachi.cli", "eval", "run", str(suite_file), "--out", str(out)],
            cwd=ROOT,
            env={**environ, "HIBACHI_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert (data_dir / "evals" / "postgres").is_dir()  # its own database, never the one `serve` uses
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    run = RunResult.load(out)
    assert [(t.scenario, t.passed) for t in run.trials] == [
        ("cli-books-by-text", True),
        ("cli-cancels-by-voice", True),
    ]
    assert "pass^1" in done.stdout
    assert "<svg" in (out / "report.html").read_text()
    same = subprocess.run(
        [sys.executable, "-m", "hibachi.cli", "eval", "compare", str(out), str(out / "results.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no scenario regressed" in same.stdout
