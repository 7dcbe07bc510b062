"""Arguments of every agent tool (validated by Pydantic; their JSON schema is what the model sees).

Field descriptions are prompts for the model. The caller's phone number is never an
argument: identity comes from the carrier number in the `ToolContext`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.models import TransferReason

Location = Annotated[
    str | None,
    Field(
        default=None,
        description=(
            "Service region slug: 'bay-area' or 'sacramento'. Omit to use the number the customer contacted."
        ),
    ),
]
StartTime = Annotated[
    Literal["12:00", "15:00", "18:00"],
    Field(description="Event start time, 24-hour HH:MM; events start only at 12:00, 15:00 or 18:00."),
]
Guests = Annotated[int, Field(ge=0, le=500)]
BookingCode = Annotated[
    str, Field(min_length=4, max_length=16, description="The booking code, e.g. 'HB7K2Q'.")
]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckAvailability(Args):
    """Open places in each slot of one day."""

    event_date: date = Field(description="The day, YYYY-MM-DD.")
    location: Location = None


class FindOpenSlots(Args):
    """The next open slots nearest a wished-for day and time."""

    near_date: date = Field(description="The day the customer would like, YYYY-MM-DD.")
    near_time: StartTime | None = Field(default=None, description="Preferred start time, if any.")
    location: Location = None
    limit: int = Field(default=3, ge=1, le=10)


class Party(Args):
    adults: Guests = Field(description="Guests 13 and older.")
    children: Guests = Field(default=0, description="Children 3 to 12.")
    toddlers: Guests = Field(default=0, description="Children under 3 (free).")
    filet_upgrades: Guests = Field(
        default=0, description="How many guests upgrade to filet mignon (+$5 each)."
    )
    lobster_upgrades: Guests = Field(
        default=0, description="How many guests upgrade to lobster tail (+$15 each)."
    )


class GetQuote(Party):
    travel_miles: int = Field(
        default=0, ge=0, le=500, description="One-way miles from the location's base, if known."
    )


class CreateBooking(Party):
    event_date: date = Field(description="Event day, YYYY-MM-DD.")
    start_time: StartTime
    customer_name: str = Field(min_length=1, max_length=120, description="The customer's full name.")
    address: str | None = Field(default=None, max_length=300, description="Where the event is held.")
    travel_miles: int = Field(default=0, ge=0, le=500)
    notes: str | None = Field(
        default=None, max_length=1000, description="Allergies, occasion, anything staff should know."
    )
    location: Location = None


class ListMyBookings(Args):
    """The caller's own upcoming bookings (found by their phone number)."""


class BookingRef(Args):
    code: BookingCode | None = Field(
        default=None, description="Booking code; omit if the caller has exactly one upcoming booking."
    )
    last_name: str | None = Field(
        default=None,
        max_length=80,
        description="Last name on the booking; needed only when the caller's number is not the booking's.",
    )


class RescheduleBooking(BookingRef):
    new_date: date = Field(description="New event day, YYYY-MM-DD.")
    new_start_time: StartTime


class CancelBooking(BookingRef):
    pass


class SendDepositLink(BookingRef):
    pass


class GetLoyalty(Args):
    include_history: bool = Field(default=False, description="Also list recent point changes.")


class JoinWaitlist(Args):
    event_date: date
    start_time: StartTime
    party_size: int = Field(ge=1, le=60)
    customer_name: str | None = Field(default=None, max_length=120)
    location: Location = None


class TextPreferences(Args):
    marketing: bool | None = Field(
        default=None, description="Opt in (true) or out (false) of offers by text."
    )
    all_texts: bool | None = Field(
        default=None, description="false stops every text (like replying STOP); true starts them again."
    )


class TransferToStaff(Args):
    reason: TransferReason = Field(description="Why a person is needed.")
    summary: str = Field(
        min_length=1,
        max_length=400,
        description="Two sentences for staff: who, what they want, what was done.",
    )
