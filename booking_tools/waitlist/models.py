from __future__ import annotations

import enum
import uuid
from datetime import date, datetime, time

from sqlalchemy import Date, DateTime, Enum, ForeignKey, Index, Time, text
from sqlalchemy.orm import Mapped, mapped_column

from hibachi.db import Base, TimestampMixin, new_id


class WaitlistStatus(enum.StrEnum):
    waiting = "waiting"
    notified = "notified"
    cancelled = "cancelled"


class WaitlistEntry(TimestampMixin, Base):
    __tablename__ = "waitlist_entries"
    __table_args__ = (
        Index("ix_waitlist_slot", "location_id", "event_date", "start_time"),
        # One waiting entry per customer and slot, even under concurrent joins.
        Index(
            "uq_waitlist_waiting",
            "location_id",
            "customer_id",
            "event_date",
            "start_time",
            unique=True,
            postgresql_where=text("status = 'waiting'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    location_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("locations.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    event_date: Mapped[date] = mapped_column(Date)
    start_time: Mapped[time] = mapped_column(Time)
    party_size: Mapped[int]
    status: Mapped[WaitlistStatus] = mapped_column(
        Enum(WaitlistStatus, name="waitlist_status"), default=WaitlistStatus.waiting
    )
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
