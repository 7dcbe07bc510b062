from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import DateTime, Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from hibachi.db import Base, TimestampMixin, new_id


class Tier(enum.StrEnum):
    bronze = "bronze"
    silver = "silver"
    gold = "gold"
    platinum = "platinum"


class EntryKind(enum.StrEnum):
    earn = "earn"
    redeem = "redeem"
    expire = "expire"
    referral = "referral"
    adjust = "adjust"
    refund = "refund"


class LoyaltyAccount(TimestampMixin, Base):
    """Cached totals over the ledger; the row is the lock for balance changes."""

    __tablename__ = "loyalty_accounts"

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    points: Mapped[int] = mapped_column(default=0)
    lifetime_points: Mapped[int] = mapped_column(default=0)
    tier: Mapped[Tier] = mapped_column(Enum(Tier, name="loyalty_tier"), default=Tier.bronze)


class LoyaltyEntry(TimestampMixin, Base):
    """Append-only ledger line. Earned lines track `remaining` for FIFO use and expiry."""

    __tablename__ = "loyalty_ledger"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[EntryKind] = mapped_column(Enum(EntryKind, name="loyalty_entry_kind"))
    points: Mapped[int]
    remaining: Mapped[int] = mapped_column(default=0)
    booking_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bookings.id"), index=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(String(300))
