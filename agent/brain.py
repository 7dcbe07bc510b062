"""The `Brain` interface: one customer turn in, a reply stream out.

A brain reads the customer's new text with the conversation so far and answers,
calling tools through the `ToolBox` it is handed (never touching the database
itself). Brains stream: voice speaks each sentence as soon as it exists, SMS joins
the pieces. Implementations: `agent.brains.deterministic` (offline default and last
fallback) and `agent.brains.llm` (OpenAI Chat Completions with tools).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.tools.base import ToolBox


class Channel(enum.StrEnum):
    sms = "sms"
    voice = "voice"


class Role(enum.StrEnum):
    customer = "customer"
    agent = "agent"


@dataclass(slots=True, frozen=True)
class ChatTurn:
    """One earlier message of the conversation, as the brain sees it."""

    role: Role
    text: str


@dataclass(slots=True)
class BrainRequest:
    """Everything a brain may use to answer one customer message.

    `state` is the brain's own scratchpad for this conversation (JSON-safe values
    only): the engine loads it before the turn and saves whatever the brain left in
    it afterwards, so the next message may be handled by another worker.
    """

    conversation_id: uuid.UUID
    channel: Channel
    text: str
    history: list[ChatTurn]
    now: datetime
    location_slug: str
    customer_phone: str
    customer_name: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    sentiment: float = 0.0
    offer_human: bool = False


@dataclass(slots=True, frozen=True)
class TextDelta:
    """A piece of the reply text, in order; pieces join with no separator."""

    text: str


@dataclass(slots=True, frozen=True)
class ModelUsage:
    """Tokens one model request used (for the cost ledger)."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    estimated: bool = False


BrainEvent = TextDelta | ModelUsage


class Brain(Protocol):
    """Answers one customer turn. Tool calls go through `tools`, which records them."""

    name: str

    def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]: ...
