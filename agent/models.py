"""ORM models of the conversation engine: conversations, messages, tool calls, transfers, cost.

The transcript lives here, written message by message, so it survives any crash; the
brain's hot state lives in Redis (see `agent.state`).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from agent.brain import Channel, Role
from hibachi.db import Base, TimestampMixin, new_id


class ConversationStatus(enum.StrEnum):
    open = "open"
    closed = "closed"


class InboundStatus(enum.StrEnum):
    """Where a customer message is in its handling (agent messages have none)."""

    received = "received"
    answered = "answered"
    failed = "failed"


class TransferReason(enum.StrEnum):
    requested = "requested"
    large_party = "large_party"
    complaint = "complaint"
    negative_sentiment = "negative_sentiment"
    cannot_help = "cannot_help"
    dtmf = "dtmf"


class TransferOutcome(enum.StrEnum):
    connected = "connected"
    message_taken = "message_taken"


class CostKind(enum.StrEnum):
    llm = "llm"
    embedding = "embedding"
    sms = "sms"
    stt = "stt"
    tts = "tts"
    voice = "voice"


class Conversation(TimestampMixin, Base):
    """One thread with one customer on one channel and agent number."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_customer_phone_created", "customer_phone", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    channel: Mapped[Channel] = mapped_column(Enum(Channel, name="channel"))
    provider: Mapped[str] = mapped_column(String(20))
    customer_phone: Mapped[str] = mapped_column(String(20))
    agent_phone: Mapped[str] = mapped_column(String(20))
    location_slug: Mapped[str] = mapped_column(String(40))
    status: Mapped[ConversationStatus] = mapped_column(
        Enum(ConversationStatus, name="conversation_status"), default=ConversationStatus.open
    )
    brain: Mapped[str | None] = mapped_column(String(40))
    # Provider call id for voice (Twilio CallSid / RingCentral session id).
    external_id: Mapped[str | None] = mapped_column(String(80), unique=True)
    last_activity_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    summary: Mapped[str | None] = mapped_column(Text)
    # Provider call facts (RingCentral: last event sequence, party, status, recordings,
    # forwarding) and the post-call analysis; empty for texts.
    call_details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )


class Message(Base):
    """One message of the transcript, in order (`id` is the order)."""

    __tablename__ = "conversation_messages"
    __table_args__ = (
        UniqueConstraint("provider", "provider_message_id", name="uq_conversation_messages_provider_id"),
        Index("ix_conversation_messages_conversation_id_id", "conversation_id", "id"),
        Index(
            "ix_conversation_messages_pending",
            "created_at",
            postgresql_where=text("status = 'received'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[Role] = mapped_column(Enum(Role, name="message_role"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    provider: Mapped[str | None] = mapped_column(String(20))
    provider_message_id: Mapped[str | None] = mapped_column(String(80))
    status: Mapped[InboundStatus | None] = mapped_column(Enum(InboundStatus, name="inbound_status"))
    # The customer message this agent message answers.
    reply_to_id: Mapped[int | None] = mapped_column(BigInteger)
    sentiment: Mapped[float | None] = mapped_column(Float)
    brain: Mapped[str | None] = mapped_column(String(40))
    # How an agent reply left us: "twiml", "rest" (outbox id in outbound_message_id), "voice", "cli".
    delivery: Mapped[str | None] = mapped_column(String(20))
    outbound_message_id: Mapped[uuid.UUID | None] = mapped_column()
    # Voice: what was actually heard when barge-in cut the reply short; latency marks per turn.
    truncated: Mapped[bool] = mapped_column(default=False)
    marks: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class ToolCall(Base):
    __tablename__ = "conversation_tool_calls"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(60))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONB)
    ok: Mapped[bool]
    error: Mapped[str | None] = mapped_column(String(60))
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Transfer(TimestampMixin, Base):
    """A hand-off to staff: why, what staff were told, and whether a person picked up."""

    __tablename__ = "conversation_transfers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[TransferReason] = mapped_column(Enum(TransferReason, name="transfer_reason"))
    outcome: Mapped[TransferOutcome] = mapped_column(Enum(TransferOutcome, name="transfer_outcome"))
    summary: Mapped[str] = mapped_column(Text)
    staff_phone: Mapped[str] = mapped_column(String(20))
    # The outbox row of the summary text sent to staff.
    outbound_message_id: Mapped[uuid.UUID | None] = mapped_column()


class CostLine(TimestampMixin, Base):
    """One billable unit of work: a model request, an embedding, SMS segments, audio seconds."""

    __tablename__ = "conversation_costs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[CostKind] = mapped_column(Enum(CostKind, name="cost_kind"))
    item: Mapped[str] = mapped_column(String(60))
    # Tokens for llm/embedding; segments for sms; seconds for stt/voice; characters for tts.
    quantity: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    usd: Mapped[Decimal] = mapped_column(Numeric(12, 6))
