from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from booking_tools.customers.phone import to_e164
from booking_tools.messaging import service
from booking_tools.messaging.schemas import MessageList, MessageOut
from hibachi.deps import AnyRole, SessionDep

router = APIRouter(prefix="/v1/messages", tags=["messaging"])


@router.get("", response_model=MessageList)
async def list_messages(
    session: SessionDep,
    _: AnyRole,
    phone: Annotated[str | None, Query(max_length=40)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> MessageList:
    """The text outbox, newest first: what was sent, blocked (opt-out) or failed, and why."""
    rows = await service.list_messages(
        session, phone=to_e164(phone) if phone else None, since=since, limit=limit, offset=offset
    )
    return MessageList(items=[MessageOut.model_validate(m) for m in rows], limit=limit, offset=offset)
