"""The OpenAI fake speaks the wire protocol the real `openai` SDK expects."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import openai
import pytest
from openai import AsyncOpenAI

from telephony.fakes import FakeOpenAI
from telephony.fakes.openai_server import DEFAULT_API_KEY, Fail, Reply, Stall, ToolCallSpec, embed_text


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    return fake_openai


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    fake.reset()
    sdk = AsyncOpenAI(base_url=fake.base_url, api_key=DEFAULT_API_KEY, max_retries=0)
    yield sdk
    await sdk.close()


def test_base_url_includes_the_api_version(fake: FakeOpenAI) -> None:
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert fake.base_url.endswith("/v1")


async def test_embeddings_default_base64_decode_to_unit_vectors(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    result = await client.embeddings.create(
        model="text-embedding-3-small", input=["reschedule my booking", "hibachi prices"]
    )

    assert fake.embedding_requests[0]["encoding_format"] == "base64"  # the SDK's own default
    assert [d.index for d in result.data] == [0, 1]
    first = np.asarray(result.data[0].embedding)
    assert first.shape == (1536,)
    assert abs(float(np.linalg.norm(first)) - 1.0) < 1e-5
    assert np.allclose(first, embed_text("reschedule my booking"), atol=1e-6)
    assert result.usage.prompt_tokens > 0


async def test_embeddings_are_deterministic_and_similar_texts_are_close(client: AsyncOpenAI) -> None:
    texts = ["cancel my booking", "cancel my booking", "can I cancel the booking", "lobster tail price"]
    result = await client.embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="float"
    )

    vectors = [np.asarray(d.embedding) for d in result.data]
    assert isinstance(result.data[0].embedding[0], float)
    assert np.array_equal(vectors[0], vectors[1])
    assert float(vectors[0] @ vectors[2]) > float(vectors[0] @ vectors[3]) + 0.2


async def test_embeddings_honour_dimensions(client: AsyncOpenAI) -> None:
    result = await client.embeddings.create(model="text-embedding-3-small", input="deposit", dimensions=256)

    vector = np.asarray(result.data[0].embedding)
    assert vector.shape == (256,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


async def test_streamed_text_arrives_in_pieces_then_usage_last(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(text="We have the 6 pm slot open.", prompt_tokens=40, completion_tokens=9))

    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Anything Saturday?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "We have the 6 pm slot open."
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (40, 9)
    assert chunks[0].model == "gpt-4o-mini-2024-07-18"
    assert all(c.usage is None for c in chunks[:-1])
    assert fake.chat_requests[0]["stream_options"] == {"include_usage": True}


async def test_streamed_parallel_tool_calls_assemble_by_index(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(
        Reply(
            tool_calls=[
                ToolCallSpec("check_availability", {"event_date": "2026-06-13"}, id="call_a"),
                ToolCallSpec("get_quote", {"adults": 12, "children": 2}, id="call_b"),
            ],
            chunk_chars=4,
        )
    )

    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Quote for 12?"}], stream=True
    )
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for part in choice.delta.tool_calls or []:
            entry = calls.setdefault(part.index, {"id": None, "name": None, "arguments": ""})
            if part.id:
                entry["id"] = part.id
            if part.function and part.function.name:
                entry["name"] = part.function.name
            if part.function and part.function.arguments:
                entry["arguments"] += part.function.arguments

    assert finish == "tool_calls"
    assert calls[0]["id"] == "call_a"
    assert calls[0]["name"] == "check_availability"
    assert json.loads(calls[0]["arguments"]) == {"event_date": "2026-06-13"}
    assert calls[1]["name"] == "get_quote"
    assert json.loads(calls[1]["arguments"]) == {"adults": 12, "children": 2}


async def test_non_streamed_completion_carries_tool_calls_and_usage(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script(Reply(tool_calls=[ToolCallSpec("list_my_bookings", id="call_x")]))

    completion = await client.chat.completions.create(
        model="gpt-4.1-nano", messages=[{"role": "user", "content": "my bookings?"}]
    )

    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None
    assert message.tool_calls[0].id == "call_x"
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0


async def test_server_error_raises_the_sdk_exception(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Fail(status=500), Fail(status=429, message="Rate limit reached", type="requests"))

    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    with pytest.raises(openai.RateLimitError) as excinfo:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert excinfo.value.status_code == 429
    assert [r.status for r in fake.requests] == [500, 429]


async def test_missing_api_key_is_rejected(fake: FakeOpenAI) -> None:
    fake.reset()
    sdk = AsyncOpenAI(base_url=fake.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await sdk.embeddings.create(model="text-embedding-3-small", input="x")
    await sdk.close()
    assert fake.requests[0].status == 401


async def test_unanswered_tool_call_is_a_bad_request(client: AsyncOpenAI) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "book it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "create_booking", "arguments": "{}"},
                }
            ],
        },
        {"role": "user", "content": "well?"},
    ]
    with pytest.raises(openai.BadRequestError, match="call_1"):
        await client.chat.completions.create(model="gpt-4o-mini", messages=messages)


async def test_stall_delays_the_answer_and_the_sdk_times_out(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Stall(seconds=2))

    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], timeout=0.3
        )


async def test_cut_stream_ends_without_finish_or_usage(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(text="Sure, let me look that up for you.", cut_after=3))

    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert len(chunks) == 3
    assert all(c.choices[0].finish_reason is None and c.usage is None for c in chunks)


async def test_responder_answers_when_the_script_is_empty(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.responder = lambda body: Reply(text=f"echo: {body['messages'][-1]['content']}")

    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}]
    )

    assert completion.choices[0].message.content == "echo: ping"


async def test_a_fake_told_not_to_record_still_answers_but_keeps_nothing(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.record = False
    fake.script(Reply(text="Sure."))

    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
    )

    assert completion.choices[0].message.content == "Sure."
    assert fake.requests == []
