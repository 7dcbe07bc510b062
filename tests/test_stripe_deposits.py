"""Deposits through Stripe Checkout: the real `stripe` SDK against the local Stripe server."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_tools.admin.models import Role
from booking_tools.bookings.service import release_expired_deposits
from booking_tools.deposits.models import Deposit
from booking_tools.deposits.stripe_provider import StripePayments, checkout_expiry
from booking_tools.messaging.models import OutboundMessage
from hibachi.app import create_app
from hibachi.context import AppContext
from hibachi.db import unit_of_work
from hibachi.settings import Settings
from telephony.fakes.stripe_server import FakeStripe, sign
from tests.conftest import PUBLIC_BASE_URL, KeyMaker
from tests.factories import create_booking


@pytest.fixture(scope="module")
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def stripe(fake_stripe: FakeStripe) -> FakeStripe:
    fake_stripe.reset()
    return fake_stripe


@pytest.fixture
def stripe_app(settings: Settings, app_ctx: AppContext, stripe: FakeStripe) -> FastAPI:
    """The app with Stripe deposits; it shares connections with `app_ctx` but not its settings."""
    stripe_settings = settings.model_copy(
        update={
            "stripe_api_key": stripe.api_key,
            "stripe_webhook_secret": stripe.webhook_secret,
            "stripe_api_base": stripe.base_url,
        }
    )
    ctx = dataclasses.replace(
        app_ctx,
        settings=stripe_settings,
        extras={**app_ctx.extras, "payments": StripePayments(stripe_settings)},
    )
    application = create_app(stripe_settings, context=ctx)
    application.state.ctx = ctx
    return application


@pytest.fixture
async def admin(stripe_app: FastAPI, make_key: KeyMaker) -> AsyncIterator[httpx.AsyncClient]:
    key = await make_key(Role.admin)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stripe_app),
        base_url=PUBLIC_BASE_URL,
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        yield client


@pytest.fixture
async def stripe_caller(stripe_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Stripe (or anyone) calling the webhook: no API key."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=stripe_app), base_url=PUBLIC_BASE_URL
    ) as client:
        yield client


async def deposit_of(db: async_sessionmaker[AsyncSession], booking: dict[str, Any]) -> Deposit:
    async with db() as session:
        return await session.get_one(Deposit, booking["deposit"]["id"])


async def booking_status(client: httpx.AsyncClient, booking: dict[str, Any]) -> str:
    status: str = (await client.get(f"/v1/bookings/{booking['id']}")).json()["status"]
    return status


async def confirmations(db: async_sessionmaker[AsyncSession]) -> int:
    async with db() as session:
        count = await session.scalar(
            select(func.count()).where(OutboundMessage.template == "booking_confirmed")
        )
    return count or 0


async def post_event(client: httpx.AsyncClient, payload: bytes, signature: str) -> httpx.Response:
    return await client.post(
        "/stripe/webhook",
        content=payload,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


def test_checkout_expiry_is_clamped_to_the_window_stripe_accepts() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert checkout_expiry(now + timedelta(hours=12), now=now) == now + timedelta(hours=12)
    assert checkout_expiry(now + timedelta(hours=24), now=now) == now + timedelta(hours=23, minutes=59)
    assert checkout_expiry(now + timedelta(minutes=5), now=now) == now + timedelta(minutes=31)


async def test_booking_deposit_link_is_a_stripe_checkout_for_100_dollars(
    admin: httpx.AsyncClient, stripe: FakeStripe, db: async_sessionmaker[AsyncSession]
) -> None:
    booking = await create_booking(admin)
    deposit = await deposit_of(db, booking)
    assert deposit.provider == "stripe"
    checkout = stripe.sessions[str(deposit.provider_ref)]
    assert booking["deposit"]["payment_url"] == checkout["url"]
    assert checkout["url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    assert (checkout["amount_total"], checkout["currency"], checkout["mode"]) == (10000, "usd", "payment")
    assert checkout["client_reference_id"] == deposit.token
    assert checkout["metadata"] == {"deposit_token": deposit.token}
    assert 0 < checkout["expires_at"] - time.time() <= 24 * 3600

    [create] = stripe.requests_to("POST", "/v1/checkout/sessions")
    assert create.headers["authorization"] == f"Bearer {stripe.api_key}"
    assert create.form["line_items[0][price_data][unit_amount]"] == ["10000"]
    assert create.form["line_items[0][price_data][currency]"] == ["usd"]
    assert create.form["line_items[0][quantity]"] == ["1"]
    assert booking["code"] in create.form["line_items[0][price_data][product_data][name]"][0]
    assert create.form["success_url"][0].startswith(f"{PUBLIC_BASE_URL}/")


async def test_signed_checkout_completed_webhook_confirms_the_booking_once(
    admin: httpx.AsyncClient,
    stripe_caller: httpx.AsyncClient,
    stripe: FakeStripe,
    db: async_sessionmaker[AsyncSession],
) -> None:
    booking = await create_booking(admin)
    deposit = await deposit_of(db, booking)
    payload, signature = stripe.complete_session(str(deposit.provider_ref))

    response = await post_event(stripe_caller, payload, signature)
    assert response.status_code == 200, response.text
    assert await booking_status(admin, booking) == "confirmed"
    assert (await deposit_of(db, booking)).status == "paid"
    assert await confirmations(db) == 1

    replay = await post_event(stripe_caller, payload, signature)
    assert replay.status_code == 200, replay.text
    assert await booking_status(admin, booking) == "confirmed"
    assert await confirmations(db) == 1


async def test_webhook_with_a_bad_signature_is_rejected_and_changes_nothing(
    admin: httpx.AsyncClient,
    stripe_caller: httpx.AsyncClient,
    stripe: FakeStripe,
    db: async_sessionmaker[AsyncSession],
) -> None:
    booking = await create_booking(admin)
    deposit = await deposit_of(db, booking)
    payload, signature = stripe.complete_session(str(deposit.provider_ref))
    attempts = {
        "wrong secret": (payload, sign(payload, "whsec_not_ours")),
        "tampered body": (payload.replace(b'"paid"', b'"paid" '), signature),
        "stale timestamp": (payload, sign(payload, stripe.webhook_secret, timestamp=int(time.time()) - 3600)),
        "no signature": (payload, ""),
    }
    for name, (body, header) in attempts.items():
        response = await post_event(stripe_caller, body, header)
        assert response.status_code == 400, name
        assert response.json()["error"] == "InvalidSignature", name
        assert response.json()["detail"], name
    assert await booking_status(admin, booking) == "pending_deposit"
    assert (await deposit_of(db, booking)).status == "pending"
    assert await confirmations(db) == 0


async def test_expired_and_unknown_events_are_acknowledged_without_changes(
    admin: httpx.AsyncClient,
    stripe_caller: httpx.AsyncClient,
    stripe: FakeStripe,
    db: async_sessionmaker[AsyncSession],
) -> None:
    booking = await create_booking(admin)
    deposit = await deposit_of(db, booking)
    expired = stripe.expire_session(str(deposit.provider_ref))
    unknown = stripe.event("customer.created", {"id": "cus_test_1", "object": "customer"})
    for payload, signature in (expired, unknown):
        response = await post_event(stripe_caller, payload, signature)
        assert response.status_code == 200, response.text
    assert await booking_status(admin, booking) == "pending_deposit"
    assert (await deposit_of(db, booking)).status == "pending"


async def test_return_page_shows_the_payment_state_but_never_confirms(
    admin: httpx.AsyncClient,
    stripe_caller: httpx.AsyncClient,
    stripe: FakeStripe,
    db: async_sessionmaker[AsyncSession],
) -> None:
    booking = await create_booking(admin)
    session_id = str((await deposit_of(db, booking)).provider_ref)
    waiting = await stripe_caller.get("/stripe/return", params={"session_id": session_id})
    assert waiting.status_code == 200
    assert "confirming" in waiting.text
    assert await booking_status(admin, booking) == "pending_deposit"
    cancelled = await stripe_caller.get("/stripe/return")
    assert "No payment was taken" in cancelled.text

    await post_event(stripe_caller, *stripe.complete_session(session_id))
    paid = await stripe_caller.get("/stripe/return", params={"session_id": session_id})
    assert "confirmed" in paid.text


async def test_cancelling_a_paid_booking_more_than_48h_ahead_refunds_at_stripe(
    admin: httpx.AsyncClient,
    stripe_caller: httpx.AsyncClient,
    stripe: FakeStripe,
    db: async_sessionmaker[AsyncSession],
) -> None:
    booking = await create_booking(admin)
    session_id = str((await deposit_of(db, booking)).provider_ref)
    await post_event(stripe_caller, *stripe.complete_session(session_id))

    response = await admin.post(f"/v1/bookings/{booking['id']}/cancel", json={"reason": "plans changed"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert (await deposit_of(db, booking)).status == "refunded"
    [refund] = stripe.refunds
    assert refund["amount"] == 10000
    assert refund["payment_intent"] == stripe.sessions[session_id]["payment_intent"]
    assert refund["status"] == "succeeded"


async def test_payment_arriving_after_the_hold_was_released_is_refunded(
    admin: httpx.AsyncClient,
    stripe_caller: httpx.AsyncClient,
    stripe: FakeStripe,
    stripe_app: FastAPI,
    db: async_sessionmaker[AsyncSession],
) -> None:
    booking = await create_booking(admin)
    session_id = str((await deposit_of(db, booking)).provider_ref)
    ctx = stripe_app.state.ctx
    async with unit_of_work(ctx.sessions) as session:
        released = await release_expired_deposits(
            session, payments=ctx.extras["payments"], now=datetime.now(UTC) + timedelta(hours=25)
        )
    assert released == 1
    response = await post_event(stripe_caller, *stripe.complete_session(session_id))
    assert response.status_code == 200
    assert (await deposit_of(db, booking)).status == "refunded"
    [refund] = stripe.refunds
    assert refund["payment_intent"] == stripe.sessions[session_id]["payment_intent"]
    assert (await admin.get(f"/v1/bookings/{booking['id']}")).json()["status"] == "cancelled"
    async with db() as session:
        templates = list(
            await session.scalars(
                select(OutboundMessage.template).where(OutboundMessage.to_phone == booking["customer_phone"])
            )
        )
    assert "late_payment_refunded" in templates
