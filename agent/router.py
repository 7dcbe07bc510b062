"""`/v1/conversations`: transcripts with sentiment, tool calls, transfers and cost."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from agent import service
from agent.brain import Channel
from agent.schemas import ConversationList, ConversationOut
from booking_tools.customers.phone import to_e164
from hibachi.deps import AnyRole, SessionDep

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.get("", response_model=ConversationList)
async def list_conversations(
    session: SessionDep,
    _: AnyRole,
    phone: Annotated[str | None, Query(max_length=40)] = None,
    channel: Channel | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ConversationList:
    """Conversations, newest first; filter by the customer's phone, channel, start time."""
    rows, total = await service.list_conversations(
        session,
        phone=to_e164(phone) if phone else None,
        channel=channel,
        since=since,
        limit=limit,
        offset=offset,
    )
    return ConversationList(
        items=[service.summary_of(c) for c in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{conversation_id}", response_model=ConversationOut)
async def get_conversation(conversation_id: uuid.UUID, session: SessionDep, _: AnyRole) -> ConversationOut:
    """One conversation: messages in order (customer turns carry sentiment), tool calls, transfers, cost."""
    return await service.conversation_detail(session, conversation_id=conversation_id)
