from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from booking_tools.reminders import service
from hibachi.deps import AnyRole, SessionDep

router = APIRouter(prefix="/v1/reminders", tags=["reminders"])


class ReminderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    booking_id: uuid.UUID
    kind: str
    outcome: str
    message_id: uuid.UUID | None
    due_at: datetime
    created_at: datetime


class ReminderList(BaseModel):
    items: list[ReminderOut]


@router.get("", response_model=ReminderList)
async def list_reminders(booking_id: uuid.UUID, session: SessionDep, _: AnyRole) -> ReminderList:
    """The 24 h and 1 h reminders claimed for a booking: queued, or skipped (opted out)."""
    rows = await service.list_reminders(session, booking_id=booking_id)
    return ReminderList(items=[ReminderOut.model_validate(r) for r in rows])
