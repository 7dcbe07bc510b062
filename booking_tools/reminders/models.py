from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hibachi.db import Base, TimestampMixin, new_id


class Reminder(TimestampMixin, Base):
    """One row per (booking, kind): the unique key is what makes a reminder never go twice."""

    __tablename__ = "reminders"
    __table_args__ = (UniqueConstraint("booking_id", "kind", name="uq_reminders_booking_kind"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"))
    kind: Mapped[str] = mapped_column(String(8))  # "24h" | "1h"
    outcome: Mapped[str] = mapped_column(String(20))  # "queued" | "skipped_opt_out"
    message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("outbound_messages.id"))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
