"""The conversations API's response shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from agent.brain import Channel, Role
from agent.models import ConversationStatus, TransferOutcome, TransferReason


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    role: Role
    text: str
    created_at: datetime
    sentiment: float | None
    brain: str | None
    delivery: str | None
    truncated: bool
    marks: dict[str, Any]


class ToolCallOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    arguments: dict[str, Any]
    ok: bool
    error: str | None
    result: dict[str, Any]
    latency_ms: float
    message_id: int | None
    created_at: datetime


class TransferOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    reason: TransferReason
    outcome: TransferOutcome
    summary: str
    staff_phone: str
    created_at: datetime


class CostOut(BaseModel):
    """Money per conversation, with its parts: usd = llm + embedding + sms + stt + tts + voice."""

    usd: Decimal
    llm: Decimal
    embedding: Decimal
    sms: Decimal
    stt: Decimal
    tts: Decimal
    voice: Decimal
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    sms_segments: int
    stt_seconds: float
    tts_characters: int


class ConversationSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel: Channel
    provider: str
    customer_phone: str
    agent_phone: str
    location: str
    status: ConversationStatus
    created_at: datetime
    last_activity_at: datetime
    ended_at: datetime | None


class ConversationOut(ConversationSummary):
    messages: list[MessageOut]
    tool_calls: list[ToolCallOut]
    transfers: list[TransferOut]
    cost: CostOut
    summary: str | None


class ConversationList(BaseModel):
    items: list[ConversationSummary]
    total: int
    limit: int
    offset: int
