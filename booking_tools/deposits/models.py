from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import DateTime, Enum, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from hibachi.db import Base, TimestampMixin, new_id


class DepositStatus(enum.StrEnum):
    pending = "pending"
    paid = "paid"
    expired = "expired"
    refunded = "refunded"
    kept = "kept"
    void = "void"


class Deposit(TimestampMixin, Base):
    __tablename__ = "deposits"
    __table_args__ = (
        # At most one live (pending or paid) deposit per booking.
        Index(
            "uq_deposits_live_booking",
            "booking_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'paid')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), index=True)
    amount_cents: Mapped[int]
    status: Mapped[DepositStatus] = mapped_column(
        Enum(DepositStatus, name="deposit_status"), default=DepositStatus.pending
    )
    provider: Mapped[str] = mapped_column(String(20))  # "builtin" | "stripe"
    provider_ref: Mapped[str | None] = mapped_column(String(200), unique=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    payment_url: Mapped[str] = mapped_column(String(500))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
