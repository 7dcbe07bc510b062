"""Sentiment per turn: VADER offline, a model when configured, and the sharp-drop rule."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.brains.llm import build_client
from agent.engine import ConversationEngine, InboundText
from agent.models import CostKind, CostLine, Message
from agent.sentiment import LLMScorer, VaderScorer, build_scorer, score, sharp_negative_trend
from hibachi.context import AppContext
from hibachi.settings import Settings
from telephony.fakes import FakeOpenAI
from telephony.fakes.openai_server import DEFAULT_API_KEY, Fail, Reply, Stall
from tests.sms import BAY_AREA_AGENT, CUSTOMER, EchoBrain


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([], False),
        ([0.5, 0.6, -0.7], True),  # a sharp fall from a happy start
        ([-0.5, -0.6], True),  # two clearly negative turns in a row
        ([-0.1, 0.0, -0.3], False),  # grumpy but not clearly negative
        ([-0.45], False),  # one negative turn with nothing to compare
        ([0.0, -0.5, 0.2], False),  # recovered
    ],
)
def test_sharp_negative_trend(scores: list[float], expected: bool) -> None:
    assert sharp_negative_trend(scores) is expected


def test_vader_reads_complaints_and_thanks() -> None:
    assert score("the chef was late and rude, this is unacceptable") < -0.4
    assert score("great food, thank you so much!") > 0.5
    assert score("   ") == 0.0


def llm_settings(fake: FakeOpenAI, **extra: object) -> Settings:
    return Settings(
        _env_file=None,
        openai_api_key=DEFAULT_API_KEY,
        openai_base_url=fake.base_url,
        hibachi_sentiment="llm",
        **extra,  # type: ignore[arg-type]  # test-only overrides of typed fields
    )


def test_vader_is_the_default_even_with_a_key(fake_openai: FakeOpenAI) -> None:
    settings = Settings(_env_file=None, openai_api_key=DEFAULT_API_KEY, openai_base_url=fake_openai.base_url)
    assert isinstance(build_scorer(settings), VaderScorer)
    assert isinstance(build_scorer(llm_settings(fake_openai)), LLMScorer)


async def test_the_model_scores_the_turn_and_its_tokens_are_reported(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply(text="-0.7", prompt_tokens=60, completion_tokens=3))
    scorer = build_scorer(llm_settings(fake_openai))
    scored = await scorer.score("I've been waiting an hour for a call back")

    assert scored.value == pytest.approx(-0.7)
    assert scored.scorer == "llm"
    assert scored.usage is not None
    assert (scored.usage.prompt_tokens, scored.usage.completion_tokens) == (60, 3)
    [request] = fake_openai.chat_requests
    assert request["model"] == "gpt-4.1-nano"
    assert request["messages"][1]["content"] == "I've been waiting an hour for a call back"


@pytest.mark.parametrize("failure", [Fail(status=500), Stall(seconds=5), Reply(text="very angry")])
async def test_a_failing_or_slow_model_falls_back_to_vader(
    fake_openai: FakeOpenAI, failure: Fail | Stall | Reply
) -> None:
    fake_openai.script(failure)
    scorer = LLMScorer(build_client(llm_settings(fake_openai)), "gpt-4.1-nano", timeout=0.5)
    started = time.perf_counter()
    scored = await scorer.score("this is terrible, I am furious")

    assert time.perf_counter() - started < 1.5
    assert scored.scorer == "vader"
    assert scored.value == pytest.approx(score("this is terrible, I am furious"))
    await scorer.aclose()


async def test_engine_stores_the_models_score_and_charges_its_tokens(
    app_ctx: AppContext, db: async_sessionmaker[AsyncSession], fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Reply(text="-0.8", prompt_tokens=50, completion_tokens=2))
    engine = ConversationEngine(
        app_ctx, brain=EchoBrain(), tools=(), scorer=build_scorer(llm_settings(fake_openai))
    )
    accepted = await engine.accept_text(
        InboundText(provider="cli", customer_phone=CUSTOMER, agent_phone=BAY_AREA_AGENT, text="meh")
    )
    await engine.drain(accepted.conversation_id)

    async with db() as session:
        message = await session.get_one(Message, accepted.message_id)
        [line] = await session.scalars(select(CostLine).where(CostLine.kind == CostKind.llm))
    assert message.sentiment == pytest.approx(-0.8)  # VADER would have said 0 for "meh"
    assert line.item.startswith("gpt-4.1-nano")
    assert (line.prompt_tokens, line.completion_tokens) == (50, 2)
    await engine.close()
