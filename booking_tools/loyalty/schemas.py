from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from booking_tools.loyalty.models import EntryKind, Tier
from booking_tools.loyalty.service import MAX_ADJUSTMENT_POINTS


class LoyaltyOut(BaseModel):
    phone: str
    points: int = Field(description="spendable points now (100 points = $10 off)")
    tier: Tier
    lifetime_points: int
    next_tier: Tier | None = Field(description="null at platinum")
    points_to_next_tier: int | None = Field(description="lifetime points still needed; null at platinum")
    expiring_within_30_days: int


class LedgerLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: EntryKind
    points: int
    remaining: int
    booking_id: uuid.UUID | None
    expires_at: datetime | None
    actor: str
    reason: str | None
    created_at: datetime


class LoyaltyHistory(BaseModel):
    items: list[LedgerLineOut]
    limit: int
    offset: int


class AdjustmentIn(BaseModel):
    points: Annotated[
        int,
        Field(
            ge=-MAX_ADJUSTMENT_POINTS,
            le=MAX_ADJUSTMENT_POINTS,
            description="points to add (positive) or remove (negative); never zero",
        ),
    ]
    reason: str = Field(min_length=3, max_length=300, examples=["goodwill: chef arrived late"])

    @field_validator("points")
    @classmethod
    def nonzero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must add or remove at least one point")
        return value

    @field_validator("reason")
    @classmethod
    def meaningful(cls, value: str) -> str:
        if len(value.strip()) < 3:
            raise ValueError("say why the points are adjusted")
        return value.strip()


class AdjustmentOut(BaseModel):
    entry: LedgerLineOut
    balance: LoyaltyOut
