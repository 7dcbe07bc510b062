from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field

from booking_tools.bookings.schemas import HHMM


class WaitlistJoin(BaseModel):
    location: str = Field(max_length=40)
    customer_phone: str = Field(min_length=3, max_length=40)
    customer_name: str | None = Field(default=None, max_length=120)
    event_date: date
    start_time: HHMM
    party_size: Annotated[int, Field(ge=1, le=1000)]


class WaitlistOut(BaseModel):
    id: uuid.UUID
    location: str
    customer_phone: str
    event_date: date
    start_time: HHMM
    party_size: int
    status: str
    created_at: datetime
    notified_at: datetime | None


class WaitlistList(BaseModel):
    items: list[WaitlistOut]
    limit: int
    offset: int
