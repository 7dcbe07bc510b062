from __future__ import annotations

import enum
import uuid
from datetime import date, datetime, time
from typing import TYPE_CHECKING

from sqlalchemy import Date, DateTime, Enum, ForeignKey, Index, String, Time
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hibachi.db import Base, TimestampMixin, new_id

if TYPE_CHECKING:
    from booking_tools.customers.models import Customer
    from booking_tools.locations.models import Location


class BookingStatus(enum.StrEnum):
    pending_deposit = "pending_deposit"
    confirmed = "confirmed"
    completed = "completed"
    cancelled = "cancelled"


HOLDS_SLOT = (BookingStatus.pending_deposit, BookingStatus.confirmed, BookingStatus.completed)


class Booking(TimestampMixin, Base):
    __tablename__ = "bookings"
    __table_args__ = (Index("ix_bookings_slot", "location_id", "event_date", "start_time"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    location_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("locations.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    customer_name: Mapped[str] = mapped_column(String(120))
    event_date: Mapped[date] = mapped_column(Date)
    start_time: Mapped[time] = mapped_column(Time)
    adults: Mapped[int]
    children: Mapped[int] = mapped_column(default=0)
    toddlers: Mapped[int] = mapped_column(default=0)
    filet_upgrades: Mapped[int] = mapped_column(default=0)
    lobster_upgrades: Mapped[int] = mapped_column(default=0)
    travel_miles: Mapped[int] = mapped_column(default=0)
    address: Mapped[str | None] = mapped_column(String(300))
    notes: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[BookingStatus] = mapped_column(
        Enum(BookingStatus, name="booking_status"), default=BookingStatus.pending_deposit
    )
    # Money is integer cents.
    food_subtotal_cents: Mapped[int]
    discount_cents: Mapped[int] = mapped_column(default=0)
    points_redeemed: Mapped[int] = mapped_column(default=0)
    referral_discount_cents: Mapped[int] = mapped_column(default=0)
    reschedule_count: Mapped[int] = mapped_column(default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    location: Mapped[Location] = relationship(lazy="raise")
    customer: Mapped[Customer] = relationship(lazy="raise")
