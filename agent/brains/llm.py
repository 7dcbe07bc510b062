"""The LLM brain: OpenAI Chat Completions, streamed, with our tools.

One customer turn is a short loop: ask the model (streaming text out as it comes),
run the tool calls it asks for through the `ToolBox`, send the results back as `tool`
messages, and ask again, at most `max_tool_rounds` times; the last request forbids
tools so the turn always ends in words. Each model request yields one `ModelUsage`
(from the stream's usage chunk, or estimated with tiktoken when the stream was cut).

Failures are raised, not hidden: `BrainTimeout` when no chunk arrives within
`first_token_timeout` (or the turn overruns `turn_timeout`), the SDK's errors
otherwise. Retrying elsewhere is `FallbackBrain`'s job, so build the client with
`max_retries=0` (`build_client`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from openai import AsyncOpenAI, AsyncStream, DefaultAioHttpClient
from openai.types.chat import ChatCompletion

from agent import prompts, tokens
from agent.brain import BrainEvent, BrainRequest, ModelUsage, Role, TextDelta

if TYPE_CHECKING:
    from agent.tools.base import ToolBox, ToolResult
    from hibachi.settings import Settings

log = logging.getLogger(__name__)

Message = dict[str, Any]
Chunk = dict[str, Any]  # one Chat Completions stream chunk, as sent (JSON)


class BrainError(RuntimeError):
    """The model did not produce a usable answer."""


class BrainTimeout(BrainError, TimeoutError):
    """The model did not answer in time (first chunk or whole turn)."""


def build_client(settings: Settings, *, max_retries: int = 0) -> AsyncOpenAI:
    """The process's OpenAI client (retries belong to `FallbackBrain`, so none here).

    It sends over the SDK's aiohttp transport (`DefaultAioHttpClient`) rather than its
    default httpx2 one: aiohttp parses HTTP in C, and a request cost ~25 % less event-loop
    CPU and reached its first streamed chunk ~1.5 ms sooner against the local model server.
    Whoever builds one closes it (`aclose` on the brains and the scorer that hold it).
    """
    return AsyncOpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        max_retries=max_retries,
        timeout=max(settings.hibachi_llm_turn_timeout, 1.0),
        http_client=DefaultAioHttpClient(),
    )


@dataclass(slots=True)
class _ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True)
class _Round:
    """What one streamed model request produced."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _ToolCall] = field(default_factory=dict)
    finish_reason: str | None = None
    model: str | None = None
    chunks: int = 0
    started: bool = False  # a token (text, tool call, finish or usage) arrived

    def assistant_message(self) -> Message:
        """The assistant turn echoed back before its tool results (content null when empty)."""
        return {
            "role": "assistant",
            "content": "".join(self.text) or None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for _, c in sorted(self.calls.items())
            ],
        }


class LLMBrain:
    """A `Brain` backed by one OpenAI chat model.

    `client` is shared by the process; `model` is the model to ask. `context_tokens`
    bounds the prompt (system prompt, history, this turn's tool exchanges, tool
    definitions and the reply's `max_completion_tokens`); the oldest history goes
    first, and a tool-calling assistant message is never separated from its results.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        name: str | None = None,
        first_token_timeout: float = 0.8,
        chunk_timeout: float = 3.0,
        turn_timeout: float = 12.0,
        max_tool_rounds: int = 5,
        max_completion_tokens: int = 400,
        context_tokens: int = 8000,
        temperature: float | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.name = name or f"llm:{model}"
        self.first_token_timeout = first_token_timeout
        self.chunk_timeout = chunk_timeout
        self.turn_timeout = turn_timeout
        self.max_tool_rounds = max_tool_rounds
        self.max_completion_tokens = max_completion_tokens
        self.context_tokens = context_tokens
        self.temperature = temperature

    @classmethod
    def from_settings(cls, settings: Settings, client: AsyncOpenAI, *, model: str | None = None) -> LLMBrain:
        return cls(
            client,
            model or settings.hibachi_llm_model,
            first_token_timeout=settings.hibachi_llm_first_token_timeout,
            turn_timeout=settings.hibachi_llm_turn_timeout,
        )

    def messages(self, request: BrainRequest) -> list[Message]:
        """The request's messages: stable prefix, per-turn context, history, the new text."""
        messages: list[Message] = [
            {"role": "system", "content": prompts.system_prompt(request.channel)},
            {
                "role": "system",
                "content": prompts.turn_context(
                    now=request.now,
                    location_slug=request.location_slug,
                    customer_name=request.customer_name,
                    offer_human=request.offer_human,
                    notes=prompts.notes(request.state),
                ),
            },
        ]
        for turn in request.history:
            role = "user" if turn.role is Role.customer else "assistant"
            if turn.text:
                messages.append({"role": role, "content": turn.text})
        messages.append({"role": "user", "content": request.text})
        return messages

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent; brains sharing a client may each call it)."""
        await self.client.close()

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.turn_timeout
        messages = self.messages(request)
        tool_defs = tools.openai_tools()
        tools_json = orjson.Fragment(tools.openai_tools_json())
        reserve = tools.definition_tokens(self.model) + self.max_completion_tokens
        said_anything = False
        for round_no in range(self.max_tool_rounds + 1):
            allow_tools = bool(tool_defs) and round_no < self.max_tool_rounds
            sent = tokens.trim_messages(
                messages, budget=self.context_tokens, model=self.model, reserve=reserve
            )
            result = _Round()
            async for event in self._ask(
                sent, tool_defs, result, allow_tools=allow_tools, deadline=deadline, tools_json=tools_json
            ):
                if isinstance(event, TextDelta):
                    said_anything = True
                yield event
            if not result.calls:
                break
            messages.append(result.assistant_message())
            for _, call in sorted(result.calls.items()):
                outcome = await tools.call(call.name, call.arguments)
                if prompts.has_effects(call.name) and tools.calls:
                    prompts.add_note(request.state, prompts.action_note(tools.calls[-1]))
                messages.append({"role": "tool", "tool_call_id": call.id, "content": _tool_content(outcome)})
        if not said_anything:
            raise BrainError(f"{self.model} ended the turn without any text")

    async def _ask(
        self,
        messages: list[Message],
        tool_defs: list[dict[str, Any]],
        result: _Round,
        *,
        allow_tools: bool,
        deadline: float,
        tools_json: orjson.Fragment,
    ) -> AsyncIterator[BrainEvent]:
        """One streamed model request: yields text and then its usage; fills `result`."""
        loop = asyncio.get_running_loop()
        params: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": self.max_completion_tokens,
        }
        if tool_defs:
            # Tools are sent even when forbidden, so the cached prefix stays the same.
            params["tools"] = tools_json
            params["tool_choice"] = "auto" if allow_tools else "none"
        if self.temperature is not None:
            params["temperature"] = self.temperature
        usage: ModelUsage | None = None
        stream = None
        try:
            # Until the first token (text, a tool call or the finish) the short first-token
            # limit applies, even after the role-only opening chunk; then `chunk_timeout`.
            first_by = min(loop.time() + self.first_token_timeout, deadline)
            waiting_for = "first token"
            try:
                async with asyncio.timeout_at(first_by):
                    # The body is already in wire form (plain JSON types), so it is posted as
                    # it is: `chat.completions.create` would first walk it against the typed
                    # params (every message against every message type, every tool schema),
                    # ~2 ms of event-loop CPU per request with our 13 tools. It is serialized
                    # here, with the tool definitions (17 KB) serialized once per tool set:
                    # the SDK's stdlib `json.dumps` took ~230 us a request, this ~2 us.
                    stream = await self.client.post(
                        "/chat/completions",
                        content=orjson.dumps(params),
                        cast_to=ChatCompletion,
                        options={"security": {"bearer_auth": True}},
                        stream=True,
                        # Chunks as sent (dicts): building a ChatCompletionChunk model per chunk
                        # was most of the stream's CPU, and we read four fields of it.
                        stream_cls=AsyncStream[object],
                    )
                iterator = aiter(stream)
                while True:
                    limit = (
                        first_by if not result.started else min(loop.time() + self.chunk_timeout, deadline)
                    )
                    waiting_for = "first token" if not result.started else "next chunk"
                    async with asyncio.timeout_at(limit):
                        chunk = await anext(iterator, None)
                    if chunk is None:
                        break
                    if not isinstance(chunk, dict):
                        raise BrainError(f"{self.model}: a stream chunk that is not an object: {chunk!r:.80}")
                    usage = self._take(chunk, result) or usage
                    for piece in _content(chunk):
                        yield TextDelta(piece)
            except TimeoutError as exc:
                if loop.time() >= deadline:
                    waiting_for = f"{waiting_for} (turn limit {self.turn_timeout:g}s)"
                raise BrainTimeout(f"{self.model}: timed out waiting for the {waiting_for}") from exc
            if result.finish_reason is None:
                # Cut off: the text may be truncated and tool arguments incomplete; never run them.
                raise BrainError(f"{self.model}: the stream ended before its finish chunk")
        except Exception:
            if result.chunks:  # the model was generating: it is billed, so estimate what it cost
                yield self._estimate(messages, tool_defs, result)
            raise
        finally:
            if stream is not None:
                await stream.close()
        yield usage if usage is not None else self._estimate(messages, tool_defs, result)

    def _take(self, chunk: Chunk, result: _Round) -> ModelUsage | None:
        """Fold one chunk into `result` (tool-call fragments keyed by index); its usage, if any."""
        result.chunks += 1
        result.model = result.model or chunk.get("model")
        usage = chunk.get("usage")
        result.started = result.started or usage is not None
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            tool_calls = delta.get("tool_calls")
            finish = choice.get("finish_reason")
            if finish or content or tool_calls:
                result.started = True
            if finish:
                result.finish_reason = finish
            if content:
                result.text.append(content)
            for part in tool_calls or ():
                call = result.calls.setdefault(part.get("index", 0), _ToolCall())
                call.id = part.get("id") or call.id
                function = part.get("function") or {}
                call.name = function.get("name") or call.name
                call.arguments += function.get("arguments") or ""
        if usage is None:
            return None
        details = usage.get("prompt_tokens_details") or {}
        return ModelUsage(
            model=chunk.get("model") or result.model or self.model,
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            cached_tokens=details.get("cached_tokens") or 0,
        )

    def _estimate(
        self, messages: list[Message], tool_defs: list[dict[str, Any]], result: _Round
    ) -> ModelUsage:
        completion = tokens.count_text("".join(result.text), self.model) + sum(
            tokens.count_text(c.name + c.arguments, self.model) for c in result.calls.values()
        )
        return ModelUsage(
            model=result.model or self.model,
            prompt_tokens=tokens.count_messages(messages, self.model)
            + tokens.count_tools(tool_defs, self.model),
            completion_tokens=completion,
            estimated=True,
        )


def _content(chunk: Chunk) -> list[str]:
    return [content for c in chunk.get("choices") or () if (content := (c.get("delta") or {}).get("content"))]


def _tool_content(result: ToolResult) -> str:
    """A tool result as the model reads it: the outcome, the sayable message, the data."""
    payload: dict[str, Any] = {"ok": result.ok, "message": result.message}
    if result.data:
        payload["data"] = result.data
    if result.error:
        payload["error"] = result.error
    if result.effect:
        payload["effect"] = result.effect.value
    return json.dumps(payload, default=str, separators=(",", ":"))
