"""Outbound text templates (plain text, no Markdown; short enough for 1-3 segments)."""

from __future__ import annotations

from datetime import date, time

BUSINESS = "My Hibachi"


def when(event_date: date, start_time: time) -> str:
    hour = start_time.strftime("%I:%M %p").lstrip("0").replace(":00", "")
    return f"{event_date:%a %b} {event_date.day} at {hour}"


def deposit_link(*, code: str, event_date: date, start_time: time, url: str) -> str:
    return (
        f"{BUSINESS}: booking {code} for {when(event_date, start_time)} is held for you. "
        f"Pay the $100 deposit within 24 hours to confirm: {url} Reply STOP to opt out."
    )


def booking_confirmed(*, code: str, event_date: date, start_time: time) -> str:
    return (
        f"{BUSINESS}: deposit received, booking {code} for {when(event_date, start_time)} "
        "is confirmed. See you then!"
    )


def booking_cancelled(*, code: str, refund: bool) -> str:
    money = "Your $100 deposit will be refunded." if refund else "The deposit is kept per our 48-hour policy."
    return f"{BUSINESS}: booking {code} is cancelled. {money}"


def booking_released(*, code: str) -> str:
    return (
        f"{BUSINESS}: the deposit for booking {code} wasn't paid within 24 hours, so the "
        "slot was released. Text us to book again."
    )


def late_payment_refunded(*, code: str) -> str:
    return (
        f"{BUSINESS}: your deposit for booking {code} arrived after the slot was released, "
        "so we refunded it in full. Text us to book again."
    )


def booking_rescheduled(*, code: str, event_date: date, start_time: time) -> str:
    return f"{BUSINESS}: booking {code} is moved to {when(event_date, start_time)}."


def reminder(*, code: str, event_date: date, start_time: time, kind: str) -> str:
    lead = "tomorrow" if kind == "24h" else "in about an hour"
    return (
        f"{BUSINESS} reminder: your hibachi chef arrives {lead} ({when(event_date, start_time)}), "
        f"booking {code}. Please have tables, chairs and plates ready. Reply STOP to opt out."
    )


def waitlist_open(*, location: str, event_date: date, start_time: time) -> str:
    return (
        f"{BUSINESS}: good news, a chef freed up at {location} on {when(event_date, start_time)}. "
        "Reply or call to book it before it's gone."
    )
