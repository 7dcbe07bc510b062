"""Reminders: texts 24 h and 1 h before confirmed events, each sent at most once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_tools.bookings import rules
from booking_tools.messaging.models import MessageStatus, OutboundMessage
from booking_tools.reminders.models import Reminder
from booking_tools.reminders.service import dispatch_due_reminders, list_reminders
from hibachi.db import unit_of_work
from tests.factories import create_booking

Sessions = async_sessionmaker[AsyncSession]
PHONE = "+14085550123"


async def confirmed_booking(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, **overrides: Any
) -> dict[str, Any]:
    """A booking whose deposit was paid on the built-in payment page."""
    booking = await create_booking(client, **overrides)
    token_path = urlsplit(booking["deposit"]["payment_url"]).path
    paid = await anon.post(token_path)
    assert paid.status_code == 200, paid.text
    response = await client.get(f"/v1/bookings/{booking['id']}")
    assert response.json()["status"] == "confirmed"
    return response.json()  # type: ignore[no-any-return]  # JSON object


def starts_at(booking: dict[str, Any]) -> datetime:
    return rules.event_start(
        "America/Los_Angeles",
        date.fromisoformat(booking["event_date"]),
        time.fromisoformat(booking["start_time"]),
    )


async def dispatch(db: Sessions, *, now: datetime) -> list[Reminder]:
    async with unit_of_work(db) as session:
        return await dispatch_due_reminders(session, now=now)


async def reminder_texts(db: Sessions, *, phone: str = PHONE) -> list[OutboundMessage]:
    async with db() as session:
        rows = await session.scalars(
            select(OutboundMessage)
            .where(OutboundMessage.to_phone == phone, OutboundMessage.template == "reminder")
            .order_by(OutboundMessage.created_at)
        )
        return list(rows)


async def test_24h_reminder_is_queued_once_when_the_job_runs_twice(
    db: Sessions, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    booking = await confirmed_booking(client, anon)
    now = starts_at(booking) - timedelta(hours=23)

    first = await dispatch(db, now=now)
    second = await dispatch(db, now=now + timedelta(minutes=5))

    assert [(r.kind, r.outcome) for r in first] == [("24h", "queued")]
    assert first[0].booking_id == uuid.UUID(booking["id"])
    assert first[0].due_at == starts_at(booking) - timedelta(hours=24)
    assert second == []
    texts = await reminder_texts(db)
    assert len(texts) == 1
    assert texts[0].status is MessageStatus.queued
    assert texts[0].id == first[0].message_id
    assert "tomorrow" in texts[0].body
    assert booking["code"] in texts[0].body


async def test_no_reminder_more_than_24h_before_the_event(
    db: Sessions, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    booking = await confirmed_booking(client, anon)

    assert await dispatch(db, now=starts_at(booking) - timedelta(hours=24, minutes=1)) == []
    assert await reminder_texts(db) == []


async def test_1h_reminder_follows_the_24h_one(
    db: Sessions, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    booking = await confirmed_booking(client, anon)
    start = starts_at(booking)

    day_before = await dispatch(db, now=start - timedelta(hours=23))
    still_day_before = await dispatch(db, now=start - timedelta(hours=2))
    hour_before = await dispatch(db, now=start - timedelta(minutes=50))
    again = await dispatch(db, now=start - timedelta(minutes=10))

    assert [r.kind for r in day_before] == ["24h"]
    assert still_day_before == []
    assert [(r.kind, r.outcome) for r in hour_before] == [("1h", "queued")]
    assert again == []
    texts = await reminder_texts(db)
    assert len(texts) == 2
    assert "in about an hour" in texts[1].body


async def test_only_the_1h_reminder_goes_when_the_24h_window_was_missed(
    db: Sessions, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    booking = await confirmed_booking(client, anon)

    sent = await dispatch(db, now=starts_at(booking) - timedelta(minutes=30))

    assert [r.kind for r in sent] == ["1h"]
    async with db() as session:
        kinds = [r.kind for r in await list_reminders(session, booking_id=uuid.UUID(booking["id"]))]
    assert kinds == ["1h"]


async def test_no_reminder_after_the_event_started(
    db: Sessions, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    booking = await confirmed_booking(client, anon)

    assert await dispatch(db, now=starts_at(booking) + timedelta(minutes=1)) == []


async def test_no_reminder_for_pending_deposit_or_cancelled_bookings(
    db: Sessions, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    pending = await create_booking(client)
    cancelled = await confirmed_booking(client, anon, customer_phone="+14085550124")
    response = await client.post(f"/v1/bookings/{cancelled['id']}/cancel", json={})
    assert response.status_code == 200, response.text
    assert starts_at(pending) == starts_at(cancelled)

    assert await dispatch(db, now=starts_at(pending) - timedelta(hours=23)) == []
    assert await dispatch(db, now=starts_at(pending) - timedelta(minutes=30)) == []
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Reminder)) == 0
        assert await session.scalar(select(func.count()).where(OutboundMessage.template == "reminder")) == 0


async def test_opted_out_customer_gets_no_reminder_text(
    db: Sessions,
    client: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    run_jobs: Callable[[], Awaitable[None]],
) -> None:
    booking = await confirmed_booking(client, anon)
    response = await client.post(f"/v1/customers/{PHONE}/opt-out")
    assert response.status_code == 200, response.text

    sent = await dispatch(db, now=starts_at(booking) - timedelta(hours=23))
    await run_jobs()

    assert [(r.kind, r.outcome) for r in sent] == [("24h", "skipped_opt_out")]
    texts = await reminder_texts(db)
    assert all(t.status is MessageStatus.blocked for t in texts)
    assert all(t.sent_at is None and t.provider_message_id is None for t in texts)
    # Recorded once: a later sweep neither retries nor sends it.
    assert await dispatch(db, now=starts_at(booking) - timedelta(hours=22)) == []


async def test_reminders_appear_in_the_message_log(
    db: Sessions, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    booking = await confirmed_booking(client, anon)
    await dispatch(db, now=starts_at(booking) - timedelta(hours=23))

    response = await client.get("/v1/messages", params={"phone": PHONE})

    assert response.status_code == 200, response.text
    reminders = [m for m in response.json()["items"] if m["template"] == "reminder"]
    assert len(reminders) == 1
    assert reminders[0]["status"] == "queued"
    assert reminders[0]["to_phone"] == PHONE
    assert booking["code"] in reminders[0]["body"]


async def test_two_workers_racing_send_each_reminder_once(
    db: Sessions, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    booking = await confirmed_booking(client, anon)
    now = starts_at(booking) - timedelta(hours=23)

    results = await asyncio.gather(*(dispatch(db, now=now) for _ in range(4)))

    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    assert len(await reminder_texts(db)) == 1


async def test_moved_booking_is_reminded_again_for_its_new_time(
    db: Sessions, client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    booking = await confirmed_booking(client, anon)
    await dispatch(db, now=starts_at(booking) - timedelta(hours=23))
    new_date = date.fromisoformat(booking["event_date"]) + timedelta(days=3)
    response = await client.post(
        f"/v1/bookings/{booking['id']}/reschedule",
        json={"event_date": new_date.isoformat(), "start_time": "12:00"},
    )
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["status"] == "confirmed"

    again = await dispatch(db, now=starts_at(moved) - timedelta(hours=23))
    later = await dispatch(db, now=starts_at(moved) - timedelta(hours=22))

    assert [(r.kind, r.outcome) for r in again] == [("24h", "queued")]
    assert again[0].due_at == starts_at(moved) - timedelta(hours=24)
    assert later == []
    texts = await reminder_texts(db)
    assert len(texts) == 2
    assert "12 PM" in texts[1].body
