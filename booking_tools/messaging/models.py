from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import DateTime, Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from hibachi.db import Base, TimestampMixin, new_id


class MessageStatus(enum.StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    delivered = "delivered"
    undelivered = "undelivered"
    failed = "failed"
    blocked = "blocked"  # opt-out or marketing without consent: never sent


class MessageKind(enum.StrEnum):
    transactional = "transactional"
    marketing = "marketing"
    staff = "staff"


class OutboundMessage(TimestampMixin, Base):
    """The text outbox: a row is written in the business transaction, sent after commit."""

    __tablename__ = "outbound_messages"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"), index=True)
    to_phone: Mapped[str] = mapped_column(String(20), index=True)
    from_phone: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(20))
    kind: Mapped[MessageKind] = mapped_column(Enum(MessageKind, name="message_kind"))
    template: Mapped[str] = mapped_column(String(60))
    body: Mapped[str] = mapped_column(String(1600))
    status: Mapped[MessageStatus] = mapped_column(
        Enum(MessageStatus, name="message_status"), default=MessageStatus.queued, index=True
    )
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
