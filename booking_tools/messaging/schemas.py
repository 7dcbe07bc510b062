from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    to_phone: str
    from_phone: str
    provider: str
    kind: str
    template: str
    body: str
    status: str
    error: str | None
    attempts: int
    provider_message_id: str | None
    created_at: datetime
    sent_at: datetime | None


class MessageList(BaseModel):
    items: list[MessageOut]
    limit: int
    offset: int
