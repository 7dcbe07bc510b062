"""Texts in through signed Twilio webhooks and RingCentral events; replies out exactly once."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.engine import ConversationEngine
from agent.models import Conversation, CostKind, CostLine, Message
from booking_tools.customers.models import Customer
from hibachi.context import AppContext
from hibachi.settings import Settings
from telephony.fakes import FakeRingCentral, FakeTwilio
from telephony.twilio.signature import SIGNATURE_HEADER, sign
from tests.sms import (
    BAY_AREA_AGENT,
    CUSTOMER,
    SMS_URL,
    EchoBrain,
    post_ringcentral,
    post_twilio,
    ringcentral_sms_event,
    text_agent,
    transcript,
    twilio_form,
)

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def use_brain(app_ctx: AppContext) -> Iterator[Callable[[Any], ConversationEngine]]:
    """Swap the app's engine for one with another brain, for the test's duration."""
    original = app_ctx.extras["engine"]

    def install(brain: Any) -> ConversationEngine:
        engine = ConversationEngine(app_ctx, brain=brain, tools=())
        app_ctx.extras["engine"] = engine
        return engine

    yield install
    app_ctx.extras["engine"] = original


@pytest.fixture
def reply_wait(app_ctx: AppContext) -> Iterator[Callable[[float], None]]:
    original = app_ctx.settings

    def set_wait(seconds: float) -> None:
        app_ctx.settings = original.model_copy(update={"hibachi_sms_reply_wait_seconds": seconds})

    yield set_wait
    app_ctx.settings = original


async def message_count(db: Sessions) -> int:
    async with db() as session:
        return await session.scalar(select(func.count()).select_from(Message)) or 0


async def customer(db: Sessions, phone: str = CUSTOMER) -> Customer | None:
    async with db() as session:
        return await session.scalar(select(Customer).where(Customer.phone == phone))


async def test_unsigned_text_is_refused_and_nothing_is_stored(anon: httpx.AsyncClient, db: Sessions) -> None:
    response = await anon.post("/twilio/sms", data=twilio_form("hi"))
    assert response.status_code == 403
    assert response.json()["error"] == "InvalidSignature"
    assert await message_count(db) == 0


async def test_text_signed_for_another_body_is_refused(
    anon: httpx.AsyncClient, db: Sessions, settings: Settings
) -> None:
    form = twilio_form("book me for saturday")
    signature = sign(SMS_URL, {**form, "Body": "something else"}, settings.twilio_auth_token)
    response = await anon.post("/twilio/sms", data=form, headers={SIGNATURE_HEADER: signature})
    assert response.status_code == 403
    assert await message_count(db) == 0


async def test_text_to_a_number_we_do_not_own_is_a_clear_error(
    anon: httpx.AsyncClient, db: Sessions, settings: Settings
) -> None:
    response = await post_twilio(anon, settings, twilio_form("hi", to_phone="+14155550100"))
    assert response.status_code == 422
    assert response.json()["error"] == "UnknownAgentNumber"
    assert await message_count(db) == 0


async def test_help_names_the_business_the_staff_line_and_how_to_opt_out(
    anon: httpx.AsyncClient, db: Sessions, settings: Settings, fake_twilio: FakeTwilio
) -> None:
    reply = await text_agent(anon, settings, "help")
    assert "My Hibachi" in reply
    assert "+14085550100" in reply
    assert "STOP" in reply
    assert await transcript(db) == [("customer", "help"), ("agent", reply)]
    assert fake_twilio.messages == []  # answered in the TwiML, not a second time by REST


async def test_stop_opts_out_silently_and_start_opts_back_in(
    anon: httpx.AsyncClient, db: Sessions, settings: Settings
) -> None:
    assert await text_agent(anon, settings, "STOP") == ""
    stopped = await customer(db)
    assert stopped is not None
    assert stopped.opted_out

    assert await text_agent(anon, settings, "book a chef for saturday") == ""  # no texts while opted out

    reply = await text_agent(anon, settings, "Start")
    assert "STOP" in reply
    started = await customer(db)
    assert started is not None
    assert not started.opted_out


async def test_a_retried_webhook_is_answered_once(
    anon: httpx.AsyncClient, db: Sessions, settings: Settings, fake_twilio: FakeTwilio, use_brain: Any
) -> None:
    engine = use_brain(EchoBrain())
    form = twilio_form("are you open on sunday?")
    first = await post_twilio(anon, settings, form)
    again = await post_twilio(anon, settings, form)
    await engine.idle()

    assert "echo: are you open on sunday?" in first.text
    assert "<Message>" not in again.text
    assert await transcript(db) == [
        ("customer", "are you open on sunday?"),
        ("agent", "echo: are you open on sunday?"),
    ]
    assert fake_twilio.messages == []


async def test_a_slow_reply_is_texted_by_rest_once_the_webhook_gives_up(
    anon: httpx.AsyncClient,
    db: Sessions,
    settings: Settings,
    fake_twilio: FakeTwilio,
    run_jobs: Callable[[], Awaitable[None]],
    use_brain: Any,
    reply_wait: Callable[[float], None],
) -> None:
    engine = use_brain(EchoBrain(delay=0.3))
    reply_wait(0.05)
    assert await text_agent(anon, settings, "slow question") == ""
    await engine.idle()
    await run_jobs()

    [sent] = fake_twilio.messages
    assert sent["to"] == CUSTOMER
    assert sent["from"] == BAY_AREA_AGENT
    assert sent["body"] == "echo: slow question"
    async with db() as session:
        reply = await session.scalar(select(Message).where(Message.role == "agent"))
        assert reply is not None
        assert reply.delivery == "rest"


async def test_two_texts_sent_together_are_answered_in_order(
    anon: httpx.AsyncClient,
    db: Sessions,
    settings: Settings,
    use_brain: Any,
    reply_wait: Callable[[float], None],
) -> None:
    brain = EchoBrain(delay=0.05)
    engine = use_brain(brain)
    reply_wait(0)
    texts = [f"message {n}" for n in range(4)]
    responses = await asyncio.gather(*(post_twilio(anon, settings, twilio_form(t)) for t in texts))
    assert all(r.status_code == 200 for r in responses)
    await engine.idle()

    async with db() as session:
        rows = (
            await session.execute(select(Message.id, Message.role, Message.text, Message.reply_to_id))
        ).all()
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 1
    arrival = [body for _, role, body, _ in sorted(rows) if role == "customer"]
    assert sorted(arrival) == texts
    # Turns ran one at a time, in arrival order, never overlapping.
    assert [text for text, _, _ in brain.turns] == arrival
    assert all(prev[2] <= nxt[1] for prev, nxt in itertools.pairwise(brain.turns))
    # Each reply answers its own message, and replies go out in arrival order.
    ids = {body: id_ for id_, role, body, _ in rows if role == "customer"}
    replies = [(reply_to, body) for id_, role, body, reply_to in sorted(rows) if role == "agent"]
    assert replies == [(ids[body], f"echo: {body}") for body in arrival]


async def test_ringcentral_subscription_handshake_echoes_the_validation_token(
    anon: httpx.AsyncClient,
) -> None:
    response = await anon.post("/ringcentral/webhook", headers={"Validation-Token": "abc123"})
    assert response.status_code == 200
    assert response.headers["Validation-Token"] == "abc123"
    assert response.headers["content-type"].startswith("application/json")
    assert len(response.content) + sum(len(k) + len(v) for k, v in response.headers.items()) < 1024


async def test_ringcentral_event_with_a_wrong_verification_token_is_refused(
    anon: httpx.AsyncClient, db: Sessions
) -> None:
    response = await post_ringcentral(anon, ringcentral_sms_event("hi"), token="wrong")
    assert response.status_code == 403
    missing = await anon.post("/ringcentral/webhook", json=ringcentral_sms_event("hi"))
    assert missing.status_code == 403
    assert await message_count(db) == 0


async def test_ringcentral_text_is_answered_through_ringcentral_once(
    anon: httpx.AsyncClient,
    db: Sessions,
    fake_ringcentral: FakeRingCentral,
    run_jobs: Callable[[], Awaitable[None]],
    use_brain: Any,
) -> None:
    engine = use_brain(EchoBrain())
    event = ringcentral_sms_event("do you serve sacramento?", message_id="3012345678016")
    for _ in range(2):  # RingCentral may deliver a notification twice
        response = await post_ringcentral(anon, event)
        assert response.status_code == 200
    await engine.idle()
    await run_jobs()

    [sent] = fake_ringcentral.messages
    assert sent["from"]["phoneNumber"] == "+19165550199"
    assert sent["to"] == [{"phoneNumber": "+19165550123"}]
    assert sent["subject"] == "echo: do you serve sacramento?"
    assert await transcript(db, "+19165550123") == [
        ("customer", "do you serve sacramento?"),
        ("agent", "echo: do you serve sacramento?"),
    ]


async def test_ringcentral_body_that_is_not_json_is_a_clear_error(anon: httpx.AsyncClient) -> None:
    response = await anon.post(
        "/ringcentral/webhook",
        content=b"not json",
        headers={"Verification-Token": "test-ringcentral-verification-token"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidNotification"


async def test_conversation_api_shows_messages_sentiment_and_cost(
    anon: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings, use_brain: Any
) -> None:
    engine = use_brain(EchoBrain())
    await text_agent(anon, settings, "I love your food, thank you!")
    await text_agent(anon, settings, "but the chef was late and rude, this is terrible")
    await engine.idle()

    listing = await client.get("/v1/conversations", params={"phone": "(408) 555-0123"})
    assert listing.status_code == 200
    [item] = listing.json()["items"]
    assert item["channel"] == "sms"
    detail = (await client.get(f"/v1/conversations/{item['id']}")).json()
    roles = [m["role"] for m in detail["messages"]]
    assert roles == ["customer", "agent", "customer", "agent"]
    happy, angry = (m["sentiment"] for m in detail["messages"] if m["role"] == "customer")
    assert happy > 0.5
    assert angry < -0.4
    cost = detail["cost"]
    assert cost["sms_segments"] == 4  # two in, two out
    assert float(cost["usd"]) == pytest.approx(4 * 0.0083)
    assert float(cost["sms"]) == float(cost["usd"])


async def test_conversations_need_an_api_key(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/v1/conversations")).status_code == 401


async def test_inbound_and_outbound_segments_are_charged(
    anon: httpx.AsyncClient, db: Sessions, settings: Settings, use_brain: Any
) -> None:
    engine = use_brain(EchoBrain())
    await text_agent(anon, settings, "x" * 200)  # 2 segments in, 2 out ("echo: " + 200)
    await engine.idle()
    async with db() as session:
        lines = list(await session.scalars(select(CostLine).where(CostLine.kind == CostKind.sms)))
    assert sorted((line.item, line.quantity) for line in lines) == [("twilio", 2.0), ("twilio-inbound", 2.0)]
