"""Waitlist: full slots only; freed places are offered gold and platinum members first."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_tools.bookings.service import release_expired_deposits
from booking_tools.customers.models import Customer
from booking_tools.deposits.models import Deposit, DepositStatus
from booking_tools.loyalty.models import LoyaltyAccount, Tier
from hibachi.context import AppContext, utcnow
from hibachi.db import unit_of_work
from tests.factories import create_booking, future_date

Sessions = async_sessionmaker[AsyncSession]
DAY = future_date(12).isoformat()
FIRST, SECOND = "+14085550141", "+14085550142"


def join_body(phone: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "location": "bay-area",
        "customer_phone": phone,
        "customer_name": "Wait Lister",
        "event_date": DAY,
        "start_time": "18:00",
        "party_size": 10,
    }
    body.update(overrides)
    return body


async def fill_slot(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Book all 3 bay-area places at DAY 18:00, each for a different customer."""
    return [await create_booking(client, customer_phone=f"+1408555013{i}", event_date=DAY) for i in range(3)]


async def join(client: httpx.AsyncClient, phone: str) -> dict[str, Any]:
    response = await client.post("/v1/waitlist", json=join_body(phone))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]  # JSON object


async def entries_by_phone(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/v1/waitlist", params={"location": "bay-area", "event_date": DAY})
    assert response.status_code == 200, response.text
    return {e["customer_phone"]: e for e in response.json()["items"]}


async def texts(client: httpx.AsyncClient, phone: str, template: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/messages", params={"phone": phone})
    assert response.status_code == 200, response.text
    return [m for m in response.json()["items"] if m["template"] == template]


async def make_gold(db: Sessions, phone: str) -> None:
    async with unit_of_work(db) as session:
        customer = await session.scalar(select(Customer).where(Customer.phone == phone))
        assert customer is not None
        session.add(LoyaltyAccount(customer_id=customer.id, points=0, lifetime_points=2_600, tier=Tier.gold))


async def test_joining_a_slot_with_room_is_refused(client: httpx.AsyncClient) -> None:
    await create_booking(client, event_date=DAY)

    response = await client.post("/v1/waitlist", json=join_body(FIRST))

    assert response.status_code == 409
    assert response.json()["error"] == "SlotHasRoom"


async def test_joining_twice_returns_the_same_entry(client: httpx.AsyncClient) -> None:
    await fill_slot(client)
    first = await join(client, FIRST)

    again = await client.post("/v1/waitlist", json=join_body(FIRST))

    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"]
    assert again.json()["status"] == "waiting"
    assert list(await entries_by_phone(client)) == [FIRST]


async def test_cancellation_notifies_the_gold_member_first(db: Sessions, client: httpx.AsyncClient) -> None:
    bookings = await fill_slot(client)
    await join(client, FIRST)
    await join(client, SECOND)
    await make_gold(db, SECOND)

    response = await client.post(f"/v1/bookings/{bookings[0]['id']}/cancel", json={})
    assert response.status_code == 200, response.text

    entries = await entries_by_phone(client)
    assert entries[SECOND]["status"] == "notified"
    assert entries[SECOND]["notified_at"] is not None
    assert entries[FIRST]["status"] == "waiting"
    offers = await texts(client, SECOND, "waitlist_open")
    assert len(offers) == 1
    assert offers[0]["status"] == "queued"
    assert await texts(client, FIRST, "waitlist_open") == []


async def test_without_tiers_the_first_to_join_is_notified_first(
    client: httpx.AsyncClient,
) -> None:
    bookings = await fill_slot(client)
    await join(client, FIRST)
    await join(client, SECOND)

    response = await client.post(f"/v1/bookings/{bookings[2]['id']}/cancel", json={})
    assert response.status_code == 200, response.text

    entries = await entries_by_phone(client)
    assert (entries[FIRST]["status"], entries[SECOND]["status"]) == ("notified", "waiting")


async def test_expired_deposit_releases_the_slot_and_notifies_the_waitlist(
    db: Sessions, client: httpx.AsyncClient, anon: httpx.AsyncClient, app_ctx: AppContext
) -> None:
    unpaid, *paid = await fill_slot(client)
    for booking in paid:
        response = await anon.post(urlsplit(booking["deposit"]["payment_url"]).path)
        assert response.status_code == 200, response.text
    await join(client, FIRST)

    async with unit_of_work(db) as session:
        released = await release_expired_deposits(
            session, payments=app_ctx.extras["payments"], now=utcnow() + timedelta(hours=25)
        )

    assert released == 1
    async with db() as session:
        deposit = await session.scalar(select(Deposit).where(Deposit.booking_id == uuid.UUID(unpaid["id"])))
    assert deposit is not None
    assert deposit.status is DepositStatus.expired  # never "refunded": it was not paid
    statuses = {
        b["id"]: (await client.get(f"/v1/bookings/{b['id']}")).json()["status"] for b in (unpaid, *paid)
    }
    assert statuses == {
        unpaid["id"]: "cancelled",
        paid[0]["id"]: "confirmed",
        paid[1]["id"]: "confirmed",
    }
    assert len(await texts(client, unpaid["customer_phone"], "booking_released")) == 1
    assert (await entries_by_phone(client))[FIRST]["status"] == "notified"
    assert len(await texts(client, FIRST, "waitlist_open")) == 1
