from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer

from booking_tools.bookings.pricing import Party, Quote

HHMM = Annotated[time, PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str)]
Count = Annotated[int, Field(ge=0, le=1000)]


def dollars(cents: int) -> float:
    return round(cents / 100, 2)


class PartyIn(BaseModel):
    adults: Count
    children: Count = 0
    toddlers: Count = Field(default=0, ge=0, le=1000, description="guests under 3 (free)")
    filet_upgrades: Count = 0
    lobster_upgrades: Count = 0

    def party(self) -> Party:
        return Party(
            adults=self.adults,
            children=self.children,
            toddlers=self.toddlers,
            filet_upgrades=self.filet_upgrades,
            lobster_upgrades=self.lobster_upgrades,
        )


class QuoteRequest(PartyIn):
    travel_miles: Annotated[int, Field(ge=0, le=1000)] = 0
    points: Annotated[int, Field(ge=0, le=10_000_000)] = 0


class BookingCreate(PartyIn):
    location: str = Field(max_length=40, examples=["bay-area"])
    customer_phone: str = Field(min_length=3, max_length=40, examples=["+14085550123"])
    customer_name: str = Field(min_length=1, max_length=120)
    event_date: date
    start_time: HHMM = Field(examples=["18:00"])
    travel_miles: Annotated[int, Field(ge=0, le=1000)] = 0
    address: str | None = Field(default=None, max_length=300)
    notes: str | None = Field(default=None, max_length=2000)
    referrer_phone: str | None = Field(
        default=None, max_length=40, description="phone of the customer who referred this one"
    )


class Reschedule(BaseModel):
    event_date: date
    start_time: HHMM


class Cancel(BaseModel):
    reason: str | None = Field(default=None, max_length=200)


class Redeem(BaseModel):
    points: Annotated[int, Field(ge=100, le=10_000_000, multiple_of=100)]


class QuoteOut(BaseModel):
    food_subtotal: float
    upgrades: float
    discount: float
    tax: float
    travel_fee: float
    total: float
    deposit: float
    balance_due: float
    gratuity_suggested_low: float
    gratuity_suggested_high: float

    @classmethod
    def of(cls, q: Quote) -> QuoteOut:
        return cls(
            food_subtotal=dollars(q.food_subtotal),
            upgrades=dollars(q.upgrades),
            discount=dollars(q.discount),
            tax=dollars(q.tax),
            travel_fee=dollars(q.travel_fee),
            total=dollars(q.total),
            deposit=dollars(q.deposit),
            balance_due=dollars(q.balance_due),
            gratuity_suggested_low=dollars(q.gratuity_low),
            gratuity_suggested_high=dollars(q.gratuity_high),
        )


class DepositOut(BaseModel):
    id: uuid.UUID
    amount: float
    status: str
    payment_url: str
    expires_at: datetime
    paid_at: datetime | None


class BookingOut(BaseModel):
    id: uuid.UUID
    code: str
    status: str
    location: str
    customer_phone: str
    customer_name: str
    event_date: date
    start_time: HHMM
    adults: int
    children: int
    toddlers: int
    filet_upgrades: int
    lobster_upgrades: int
    travel_miles: int
    address: str | None
    notes: str | None
    points_redeemed: int
    reschedule_count: int
    quote: QuoteOut
    deposit: DepositOut | None
    created_at: datetime
    cancelled_at: datetime | None
    cancel_reason: str | None


class BookingList(BaseModel):
    items: list[BookingOut]
    total: int
    limit: int
    offset: int


class SlotOut(BaseModel):
    start: HHMM
    remaining: int
    capacity: int
    reason: str | None = None


class AvailabilityOut(BaseModel):
    location: str
    date: date
    slots: list[SlotOut]


class OpenSlot(BaseModel):
    date: date
    start: HHMM
    remaining: int


class SearchOut(BaseModel):
    location: str
    near: datetime
    items: list[OpenSlot]
