"""The tool layer's contract: what a tool call gets and gives back.

Every tool runs in its own unit of work (one transaction per call), validates its
arguments with Pydantic, and turns domain errors into a `ToolResult` with a message
a person can hear or read. The customer's identity is the carrier number in
`ToolContext.customer_phone`, never anything the customer says.
"""

from __future__ import annotations

import enum
import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from agent import tokens
from hibachi.context import AppContext
from hibachi.errors import DomainError


class Effect(enum.StrEnum):
    """Something the channel must do after the reply (voice dials staff; SMS just says so)."""

    transfer = "transfer"
    end = "end"


@dataclass(slots=True)
class ToolResult:
    """What a tool returns: `data` for a model (JSON-safe), `message` for a person."""

    ok: bool
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    effect: Effect | None = None


@dataclass(slots=True)
class ToolCallRecord:
    """One executed tool call, kept by the `ToolBox` for the transcript and evals."""

    name: str
    arguments: dict[str, Any]
    result: ToolResult
    latency_ms: float
    started_at: datetime


@dataclass(slots=True)
class ToolContext:
    """Who is asking and where: fixed for the whole turn."""

    app: AppContext
    conversation_id: uuid.UUID
    channel: str
    customer_phone: str
    location_slug: str
    now: datetime


Runner = Callable[[ToolContext, Any], Awaitable[ToolResult]]


@dataclass(slots=True, frozen=True)
class Tool:
    """A tool: its name and description (a prompt for the model), arguments, and code."""

    name: str
    description: str
    args: type[BaseModel]
    run: Runner

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": _json_schema(self.args),
            },
        }


@functools.lru_cache(maxsize=64)
def _definition_tokens(tools: tuple[Tool, ...], model: str) -> int:
    return tokens.count_tools([tool.openai_schema() for tool in tools], model)


@functools.lru_cache(maxsize=64)
def _definitions_json(tools: tuple[Tool, ...]) -> bytes:
    return orjson.dumps([tool.openai_schema() for tool in tools])


@functools.cache
def _json_schema(args: type[BaseModel]) -> dict[str, Any]:
    """An argument model's JSON schema, built once per process (every model request sends it)."""
    return args.model_json_schema()


class ToolBox:
    """The tools one turn may use, bound to the caller; records every call made.

    `call` never raises for bad arguments or business-rule errors: those come back as
    a failed `ToolResult` whose message can be said to the customer.
    """

    def __init__(self, context: ToolContext, tools: Sequence[Tool]) -> None:
        self.context = context
        self.tools = {tool.name: tool for tool in tools}
        self.calls: list[ToolCallRecord] = []

    def openai_tools(self) -> list[dict[str, Any]]:
        """Tool definitions for Chat Completions, in a byte-stable order (prompt caching)."""
        return [self.tools[name].openai_schema() for name in sorted(self.tools)]

    def openai_tools_json(self) -> bytes:
        """`openai_tools()` as JSON, serialized once per tool set (~17 KB, sent with every request)."""
        return _definitions_json(self._sorted())

    def definition_tokens(self, model: str) -> int:
        """What the tool definitions add to every request's prompt (counted once per tool set)."""
        return _definition_tokens(self._sorted(), model)

    def _sorted(self) -> tuple[Tool, ...]:
        return tuple(self.tools[name] for name in sorted(self.tools))

    async def call(self, name: str, arguments: dict[str, Any] | str) -> ToolResult:
        started_at = self.context.now
        started = time.perf_counter()
        raw: dict[str, Any] = {}
        try:
            raw = json.loads(arguments or "{}") if isinstance(arguments, str) else dict(arguments)
            tool = self.tools.get(name)
            if tool is None:
                result = ToolResult(ok=False, message=f"There is no tool called {name}.", error="UnknownTool")
            else:
                result = await tool.run(self.context, tool.args.model_validate(raw))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            # pydantic.ValidationError is a ValueError.
            result = ToolResult(ok=False, message=invalid_arguments_message(exc), error="InvalidArguments")
        except DomainError as exc:
            result = ToolResult(ok=False, message=str(exc.detail), error=exc.name)
        self.calls.append(
            ToolCallRecord(
                name=name,
                arguments=raw,
                result=result,
                latency_ms=(time.perf_counter() - started) * 1000,
                started_at=started_at,
            )
        )
        return result


def invalid_arguments_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        return f"Some details were missing or not understood ({problems})."
    return "Some details were missing or not understood."
