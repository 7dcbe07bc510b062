"""Reading conversations back: lists, full transcripts, cost totals."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.brain import Channel
from agent.models import Conversation, CostKind, CostLine, Message, ToolCall, Transfer
from agent.schemas import (
    ConversationOut,
    ConversationSummary,
    CostOut,
    MessageOut,
    ToolCallOut,
    TransferOut,
)
from hibachi.errors import NotFound


class ConversationNotFound(NotFound):
    pass


def summary_of(conversation: Conversation) -> ConversationSummary:
    return ConversationSummary(
        id=conversation.id,
        channel=conversation.channel,
        provider=conversation.provider,
        customer_phone=conversation.customer_phone,
        agent_phone=conversation.agent_phone,
        location=conversation.location_slug,
        status=conversation.status,
        created_at=conversation.created_at,
        last_activity_at=conversation.last_activity_at,
        ended_at=conversation.ended_at,
    )


async def list_conversations(
    session: AsyncSession,
    *,
    phone: str | None,
    channel: Channel | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[Conversation], int]:
    query = select(Conversation)
    if phone:
        query = query.where(Conversation.customer_phone == phone)
    if channel:
        query = query.where(Conversation.channel == channel)
    if since:
        query = query.where(Conversation.created_at >= since)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(Conversation.created_at.desc(), Conversation.id).limit(limit).offset(offset)
    )
    return list(rows), total


def cost_of(lines: list[CostLine]) -> CostOut:
    by_kind: dict[CostKind, Decimal] = defaultdict(Decimal)
    quantity: dict[CostKind, float] = defaultdict(float)
    for line in lines:
        by_kind[line.kind] += line.usd
        quantity[line.kind] += line.quantity
    return CostOut(
        usd=sum(by_kind.values(), Decimal(0)),
        llm=by_kind[CostKind.llm],
        embedding=by_kind[CostKind.embedding],
        sms=by_kind[CostKind.sms],
        stt=by_kind[CostKind.stt],
        tts=by_kind[CostKind.tts],
        voice=by_kind[CostKind.voice],
        prompt_tokens=sum(line.prompt_tokens for line in lines if line.kind is CostKind.llm),
        cached_tokens=sum(line.cached_tokens for line in lines if line.kind is CostKind.llm),
        completion_tokens=sum(line.completion_tokens for line in lines if line.kind is CostKind.llm),
        sms_segments=int(quantity[CostKind.sms]),
        stt_seconds=quantity[CostKind.stt],
        tts_characters=int(quantity[CostKind.tts]),
    )


async def conversation_detail(session: AsyncSession, *, conversation_id: uuid.UUID) -> ConversationOut:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise ConversationNotFound(f"no conversation {conversation_id}")
    messages = await session.scalars(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
    )
    calls = await session.scalars(
        select(ToolCall).where(ToolCall.conversation_id == conversation_id).order_by(ToolCall.id)
    )
    transfers = await session.scalars(
        select(Transfer).where(Transfer.conversation_id == conversation_id).order_by(Transfer.created_at)
    )
    costs = await session.scalars(select(CostLine).where(CostLine.conversation_id == conversation_id))
    return ConversationOut(
        **summary_of(conversation).model_dump(),
        messages=[MessageOut.model_validate(m) for m in messages],
        tool_calls=[ToolCallOut.model_validate(c) for c in calls],
        transfers=[TransferOut.model_validate(t) for t in transfers],
        cost=cost_of(list(costs)),
        summary=conversation.summary,
    )
