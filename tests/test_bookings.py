"""Bookings through the HTTP API: availability, rules, capacity, deposits, changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_tools.admin.models import Role
from booking_tools.bookings import service
from booking_tools.bookings.models import Booking
from booking_tools.bookings.schemas import BookingCreate
from booking_tools.deposits import service as deposits
from booking_tools.deposits.models import Deposit
from booking_tools.messaging.models import OutboundMessage
from hibachi.context import AppContext
from hibachi.db import unit_of_work
from tests.conftest import ClientMaker
from tests.factories import booking_body, create_booking, future_date, local_now


def token_of(booking: dict[str, Any]) -> str:
    return str(booking["deposit"]["payment_url"]).rsplit("/", 1)[-1]


async def texts_to(db: async_sessionmaker[AsyncSession], phone: str) -> list[OutboundMessage]:
    async with db() as session:
        rows = await session.scalars(
            select(OutboundMessage)
            .where(OutboundMessage.to_phone == phone)
            .order_by(OutboundMessage.created_at)
        )
        return list(rows)


async def test_locations_list_the_reference_business(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/locations")
    assert response.status_code == 200
    by_slug = {loc["slug"]: loc for loc in response.json()["items"]}
    assert set(by_slug) == {"bay-area", "sacramento"}
    assert by_slug["bay-area"]["staff_phone"] == "+14085550100"
    assert by_slug["bay-area"]["agent_phone"] == "+14085550199"
    assert by_slug["bay-area"]["chefs"] == 3
    assert by_slug["sacramento"]["agent_phone"] == "+19165550199"
    assert by_slug["sacramento"]["chefs"] == 2


async def test_availability_shows_three_slots_with_chef_capacity(client: httpx.AsyncClient) -> None:
    day = future_date(12)
    response = await client.get(
        "/v1/availability", params={"location": "sacramento", "date": day.isoformat()}
    )
    assert response.status_code == 200
    assert response.json()["slots"] == [
        {"start": "12:00", "remaining": 2, "capacity": 2, "reason": None},
        {"start": "15:00", "remaining": 2, "capacity": 2, "reason": None},
        {"start": "18:00", "remaining": 2, "capacity": 2, "reason": None},
    ]


async def test_availability_inside_48_hours_is_closed_with_a_reason(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/v1/availability", params={"location": "bay-area", "date": local_now().date().isoformat()}
    )
    slots = response.json()["slots"]
    assert all(s["remaining"] == 0 and "48 hours" in s["reason"] for s in slots)


async def test_booking_returns_code_quote_and_deposit_link(client: httpx.AsyncClient) -> None:
    booking = await create_booking(client, customer_phone="(408) 555-0177", adults=12, children=2)
    assert booking["status"] == "pending_deposit"
    assert booking["code"].startswith("MH")
    assert len(booking["code"]) == 8
    assert booking["customer_phone"] == "+14085550177"
    assert booking["start_time"] == "18:00"
    assert booking["quote"]["food_subtotal"] == 12 * 55 + 2 * 30
    assert booking["deposit"]["amount"] == 100
    assert booking["deposit"]["payment_url"].startswith("https://agent.test/pay/")
    fetched = (await client.get(f"/v1/bookings/{booking['id']}")).json()
    assert fetched["code"] == booking["code"]
    listed = (await client.get("/v1/bookings", params={"phone": "408-555-0177"})).json()
    assert [b["id"] for b in listed["items"]] == [booking["id"]]


async def test_booking_texts_the_deposit_link_from_the_location_number(
    client: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    booking = await create_booking(client, location="sacramento", customer_phone="+19165550150")
    [text] = await texts_to(db, "+19165550150")
    assert text.template == "deposit_link"
    assert text.from_phone == "+19165550199"
    assert text.provider == "ringcentral"
    assert booking["deposit"]["payment_url"] in text.body


async def test_lead_time_horizon_and_slot_rules_give_readable_422s(client: httpx.AsyncClient) -> None:
    cases: dict[str, dict[str, Any]] = {
        "48 hours": {"event_date": (local_now() + timedelta(days=1)).date().isoformat()},
        "180 days": {"event_date": future_date(200).isoformat()},
        "12:00, 15:00 or 18:00": {"start_time": "17:00"},
        "food minimum": {"adults": 9, "children": 0},
        "staff": {"adults": 55, "children": 6},
    }
    for expected, overrides in cases.items():
        response = await client.post("/v1/bookings", json=booking_body(**overrides))
        assert response.status_code == 422, (expected, response.text)
        assert response.json()["error"] == "BookingRuleViolation"
        assert expected in response.json()["detail"]


async def test_bad_input_is_a_json_422_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/bookings", json=booking_body(customer_phone="not a phone"))
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidPhone"
    response = await client.post("/v1/bookings", json={"location": "bay-area"})
    assert response.status_code == 422
    assert response.json()["error"] == "ValidationError"
    response = await client.get(
        "/v1/availability", params={"location": "mars", "date": future_date().isoformat()}
    )
    assert response.status_code == 404
    assert response.json()["error"] == "LocationNotFound"


async def test_a_full_slot_answers_409_slot_unavailable(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await create_booking(client, customer_phone=f"+1408555020{i}")
    response = await client.post("/v1/bookings", json=booking_body(customer_phone="+14085550209"))
    assert response.status_code == 409
    assert response.json()["error"] == "SlotUnavailable"
    slots = (
        await client.get(
            "/v1/availability", params={"location": "bay-area", "date": future_date().isoformat()}
        )
    ).json()["slots"]
    assert {s["start"]: s["remaining"] for s in slots}["18:00"] == 0


async def test_50_concurrent_bookings_for_the_last_place_exactly_one_wins(
    client: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    day = future_date(20)
    for i in range(2):
        await create_booking(client, event_date=day.isoformat(), customer_phone=f"+1408555030{i}")
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/bookings",
                json=booking_body(event_date=day.isoformat(), customer_phone=f"+140855504{i:02d}"),
            )
            for i in range(50)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1
    assert codes.count(409) == 49
    assert all(r.json()["error"] == "SlotUnavailable" for r in responses if r.status_code == 409)
    async with db() as session:
        held = await session.scalar(
            select(func.count()).where(Booking.event_date == day, Booking.status != "cancelled")
        )
    assert held == 3


async def test_replayed_booking_with_idempotency_key_returns_the_same_booking(
    client: httpx.AsyncClient,
) -> None:
    body = booking_body()
    first = await client.post("/v1/bookings", json=body, headers={"Idempotency-Key": "abc-123"})
    again = await client.post("/v1/bookings", json=body, headers={"Idempotency-Key": "abc-123"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["deposit"]["id"] == first.json()["deposit"]["id"]


async def test_replayed_deposit_creation_returns_the_same_deposit(
    client: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    booking = await create_booking(client)
    replies = await asyncio.gather(*(client.post(f"/v1/bookings/{booking['id']}/deposit") for _ in range(10)))
    assert {r.status_code for r in replies} == {200}
    assert {r.json()["id"] for r in replies} == {booking["deposit"]["id"]}
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Deposit)) == 1
    assert len([t for t in await texts_to(db, "+14085550123") if t.template == "deposit_link"]) == 1


async def test_paying_on_the_payment_page_confirms_and_texts(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    booking = await create_booking(client)
    page = await anon.get(f"/pay/{token_of(booking)}")
    assert page.status_code == 200
    assert booking["code"] in page.text
    assert "$100.00" in page.text
    paid = await anon.post(f"/pay/{token_of(booking)}")
    assert paid.status_code == 200
    assert "confirmed" in paid.text
    again = await anon.post(f"/pay/{token_of(booking)}")
    assert again.status_code == 200
    fetched = (await client.get(f"/v1/bookings/{booking['id']}")).json()
    assert fetched["status"] == "confirmed"
    assert fetched["deposit"]["status"] == "paid"
    templates = [t.template for t in await texts_to(db, "+14085550123")]
    assert templates == ["deposit_link", "booking_confirmed"]


async def test_an_expired_deposit_releases_the_slot(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, app_ctx: AppContext
) -> None:
    day = future_date(15)
    bookings = [
        await create_booking(client, event_date=day.isoformat(), customer_phone=f"+1408555060{i}")
        for i in range(3)
    ]
    full = await client.post(
        "/v1/bookings", json=booking_body(event_date=day.isoformat(), customer_phone="+14085550699")
    )
    assert full.status_code == 409
    async with unit_of_work(app_ctx.sessions) as session:
        released = await service.release_expired_deposits(
            session, payments=app_ctx.extras["payments"], now=datetime.now(UTC) + timedelta(hours=25)
        )
    assert released == 3
    first = (await client.get(f"/v1/bookings/{bookings[0]['id']}")).json()
    assert first["status"] == "cancelled"
    assert first["cancel_reason"] == "deposit not paid within 24 hours"
    assert (await anon.post(f"/pay/{token_of(bookings[0])}")).status_code == 409
    retry = await client.post(
        "/v1/bookings", json=booking_body(event_date=day.isoformat(), customer_phone="+14085550699")
    )
    assert retry.status_code == 201


async def test_an_unexpired_deposit_is_not_released(client: httpx.AsyncClient, app_ctx: AppContext) -> None:
    booking = await create_booking(client)
    async with unit_of_work(app_ctx.sessions) as session:
        released = await service.release_expired_deposits(
            session, payments=app_ctx.extras["payments"], now=datetime.now(UTC) + timedelta(hours=23)
        )
    assert released == 0
    assert (await client.get(f"/v1/bookings/{booking['id']}")).json()["status"] == "pending_deposit"


async def test_cancel_more_than_48h_ahead_refunds_the_deposit(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    booking = await create_booking(client)
    await anon.post(f"/pay/{token_of(booking)}")
    response = await client.post(f"/v1/bookings/{booking['id']}/cancel", json={"reason": "plans changed"})
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    async with db() as session:
        deposit = await session.get_one(Deposit, booking["deposit"]["id"])
    assert deposit.status == "refunded"
    assert "refunded" in (await texts_to(db, "+14085550123"))[-1].body


def slot_within_48h() -> tuple[str, str]:
    """A bookable-slot date and time that starts between 2 h and 47 h from now."""
    now = local_now()
    for days in range(3):
        for hour in (12, 15, 18):
            start = datetime.combine((now + timedelta(days=days)).date(), time(hour), tzinfo=now.tzinfo)
            if timedelta(hours=2) < start - now < timedelta(hours=47):
                return start.date().isoformat(), f"{hour}:00"
    raise AssertionError("there is always a slot within 47 hours")


async def test_cancel_within_48h_keeps_the_deposit(app_ctx: AppContext, client: httpx.AsyncClient) -> None:
    payments = app_ctx.extras["payments"]
    event_date, start_time = slot_within_48h()
    booked_at = datetime.now(UTC) - timedelta(days=3)
    async with unit_of_work(app_ctx.sessions) as session:
        booking, _ = await service.create_booking(
            session,
            booking_in=BookingCreate(**booking_body(event_date=event_date, start_time=start_time)),
            payments=payments,
            now=booked_at,
        )
        deposit = await deposits.live_deposit(session, booking_id=booking.id)
        assert deposit is not None
        await deposits.mark_paid(session, deposit=deposit, now=booked_at + timedelta(hours=1))
    response = await client.post(f"/v1/bookings/{booking.id}/cancel", json={})
    assert response.status_code == 200
    async with app_ctx.sessions() as session:
        kept = await session.get_one(Deposit, deposit.id)
    assert kept.status == "kept"


async def test_one_free_reschedule_moves_the_deposit(
    client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    booking = await create_booking(client)
    await anon.post(f"/pay/{token_of(booking)}")
    new_day = future_date(30).isoformat()
    moved = await client.post(
        f"/v1/bookings/{booking['id']}/reschedule", json={"event_date": new_day, "start_time": "12:00"}
    )
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert (body["event_date"], body["start_time"], body["status"]) == (new_day, "12:00", "confirmed")
    assert body["deposit"]["id"] == booking["deposit"]["id"]
    again = await client.post(
        f"/v1/bookings/{booking['id']}/reschedule", json={"event_date": new_day, "start_time": "15:00"}
    )
    assert again.status_code == 422
    assert "once" in again.json()["detail"]


async def test_reschedule_into_a_full_slot_is_409(client: httpx.AsyncClient) -> None:
    day = future_date(25).isoformat()
    for i in range(3):
        await create_booking(client, event_date=day, customer_phone=f"+1408555070{i}")
    booking = await create_booking(client)
    response = await client.post(
        f"/v1/bookings/{booking['id']}/reschedule", json={"event_date": day, "start_time": "18:00"}
    )
    assert response.status_code == 409


async def test_search_finds_nearest_open_slots(client: httpx.AsyncClient) -> None:
    day = future_date(40)
    for i in range(2):
        await create_booking(
            client, location="sacramento", event_date=day.isoformat(), customer_phone=f"+1916555080{i}"
        )
    response = await client.get(
        "/v1/availability/search",
        params={"location": "sacramento", "near": f"{day.isoformat()}T18:00", "limit": 3},
    )
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 3
    assert (day.isoformat(), "18:00") not in {(i["date"], i["start"]) for i in items}
    assert items[0]["date"] == day.isoformat()
    assert items[0]["start"] == "15:00"


async def test_api_needs_a_key_and_roles_limit_writes(
    anon: httpx.AsyncClient, client_as: ClientMaker
) -> None:
    response = await anon.get("/v1/locations")
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
    bad = await anon.get("/v1/locations", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    analyst = await client_as(Role.analyst)
    assert (await analyst.get("/v1/locations")).status_code == 200
    forbidden = await analyst.post("/v1/bookings", json=booking_body())
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "Forbidden"
    staff = await client_as(Role.staff)
    assert (await staff.post("/v1/bookings", json=booking_body())).status_code == 201
    assert (await staff.get("/v1/admin/api-keys")).status_code == 403


async def test_mutations_are_written_to_the_audit_log(client_as: ClientMaker) -> None:
    staff = await client_as(Role.staff)
    booking = await create_booking(staff)
    await staff.post(f"/v1/bookings/{booking['id']}/cancel", json={"reason": "test"})
    admin = await client_as(Role.admin)
    entries = (await admin.get("/v1/admin/audit", params={"entity_id": booking["id"]})).json()["items"]
    actions = {e["action"]: e for e in entries}
    assert set(actions) == {"booking.create", "booking.cancel"}
    assert actions["booking.cancel"]["actor"] == "staff:test-staff"
    assert actions["booking.cancel"]["before"]["status"] == "pending_deposit"
    assert actions["booking.cancel"]["after"]["status"] == "cancelled"


async def test_health_readiness_and_metrics(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/healthz")).json() == {"status": "ok"}
    ready = await anon.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok"}
    metrics = await anon.get("/metrics")
    assert "hibachi_http_request_seconds" in metrics.text


async def test_text_postgres_cannot_store_is_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/bookings", json=booking_body(customer_name="Nul\u0000Byte"))
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidInput"


async def test_reschedule_within_48h_keeps_the_deposit_and_asks_for_a_new_one(
    app_ctx: AppContext, client: httpx.AsyncClient, db: async_sessionmaker[AsyncSession]
) -> None:
    event_date, start_time = slot_within_48h()
    booked_at = datetime.now(UTC) - timedelta(days=3)
    async with unit_of_work(app_ctx.sessions) as session:
        booking, _ = await service.create_booking(
            session,
            booking_in=BookingCreate(**booking_body(event_date=event_date, start_time=start_time)),
            payments=app_ctx.extras["payments"],
            now=booked_at,
        )
        first = await deposits.live_deposit(session, booking_id=booking.id)
        assert first is not None
        await deposits.mark_paid(session, deposit=first, now=booked_at + timedelta(hours=1))
    moved = await client.post(
        f"/v1/bookings/{booking.id}/reschedule",
        json={"event_date": future_date(20).isoformat(), "start_time": "12:00"},
    )
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["status"] == "pending_deposit"
    assert body["deposit"]["status"] == "pending"
    assert body["deposit"]["id"] != str(first.id)
    async with db() as session:
        assert (await session.get_one(Deposit, first.id)).status == "kept"
    templates = [t.template for t in await texts_to(db, "+14085550123")]
    assert templates.count("deposit_link") == 2
    assert "booking_rescheduled" in templates


async def test_quote_prices_a_party_with_upgrades_travel_and_points(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/quotes",
        json={"adults": 10, "children": 2, "lobster_upgrades": 2, "travel_miles": 30, "points": 300},
    )
    assert response.status_code == 200
    quote = response.json()
    assert quote["food_subtotal"] == 10 * 55 + 2 * 30 + 2 * 15
    assert quote["discount"] == 30
    assert quote["tax"] == 56.43  # 9.25 % of $610.00 = $56.425, rounded half up
    assert quote["travel_fee"] == 20
    assert quote["deposit"] == 100
    too_many = await client.post("/v1/quotes", json={"adults": 10, "points": 5000})
    assert too_many.status_code == 422
    assert "at most 2700 points" in too_many.json()["detail"]


async def test_booking_can_be_found_by_its_code(client: httpx.AsyncClient) -> None:
    booking = await create_booking(client)
    found = await client.get(f"/v1/bookings/by-code/{booking['code'].lower()}")
    assert found.status_code == 200
    assert found.json()["id"] == booking["id"]
    assert (await client.get("/v1/bookings/by-code/MHNOPE00")).status_code == 404
