"""The outbox job and delivery reports against PostgreSQL and the local Twilio server."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from arq import Retry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_tools.customers.models import Customer
from booking_tools.customers.service import get_or_create_customer
from booking_tools.locations.models import Location
from booking_tools.messaging.delivery import apply_delivery_status
from booking_tools.messaging.models import MessageStatus, OutboundMessage
from booking_tools.messaging.providers import TwilioSender
from booking_tools.messaging.service import queue_text
from booking_tools.messaging.tasks import MAX_ATTEMPTS, send_text, sweep_outbox
from hibachi.context import AppContext, utcnow
from hibachi.db import unit_of_work
from hibachi.settings import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN
from telephony.fakes import FakeTwilio

Sessions = async_sessionmaker[AsyncSession]
PHONE = "+14085550123"


@pytest.fixture(scope="module")
def twilio_server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def twilio(twilio_server: FakeTwilio) -> FakeTwilio:
    twilio_server.reset()
    return twilio_server


@pytest.fixture
def job_ctx(app_ctx: AppContext, twilio: FakeTwilio) -> dict[str, Any]:
    """An arq job context whose Twilio sender talks to the local server."""
    sender = TwilioSender(
        account_sid=DEV_TWILIO_ACCOUNT_SID,
        auth_token=DEV_TWILIO_AUTH_TOKEN,
        api_base=twilio.base_url,
    )
    extras = {**app_ctx.extras, "sms_senders": {"twilio": sender}}
    return {"app": dataclasses.replace(app_ctx, extras=extras)}


async def queued_text(db: Sessions, *, body: str = "Booking HB1234 is confirmed.") -> uuid.UUID:
    """A transactional text from the bay-area (Twilio) number, queued but not enqueued."""
    async with unit_of_work(db) as session:
        location = await session.scalar(select(Location).where(Location.slug == "bay-area"))
        assert location is not None
        customer = await get_or_create_customer(session, phone=PHONE, name="Alex Kim")
        message = await queue_text(
            session,
            location=location,
            to_phone=PHONE,
            body=body,
            template="test",
            customer=customer,
        )
        return message.id


async def outbox_row(db: Sessions, message_id: uuid.UUID) -> OutboundMessage:
    async with unit_of_work(db) as session:
        return await session.get_one(OutboundMessage, message_id)


async def customer(db: Sessions) -> Customer:
    async with unit_of_work(db) as session:
        found = await session.scalar(select(Customer).where(Customer.phone == PHONE))
        assert found is not None
        return found


async def test_text_is_sent_once_even_when_the_job_runs_twice(
    db: Sessions, twilio: FakeTwilio, job_ctx: dict[str, Any]
) -> None:
    message_id = await queued_text(db)

    outcomes = await asyncio.gather(send_text(job_ctx, str(message_id)), send_text(job_ctx, str(message_id)))
    again = await send_text(job_ctx, str(message_id))

    assert sorted(outcomes)[0] == "sent"
    assert sorted(outcomes)[1].startswith("skipped")
    assert again == "skipped: already sent"
    [sent] = twilio.messages
    assert (sent["to"], sent["from"], sent["body"]) == (
        PHONE,
        "+14085550199",
        "Booking HB1234 is confirmed.",
    )
    assert sent["status_callback"] == "https://agent.test/twilio/status"
    row = await outbox_row(db, message_id)
    assert row.status is MessageStatus.sent
    assert row.provider_message_id == sent["sid"]
    assert row.attempts == 1
    assert row.sent_at is not None
    assert row.error is None


async def test_customer_who_opted_out_after_queueing_is_blocked_not_texted(
    db: Sessions, twilio: FakeTwilio, job_ctx: dict[str, Any]
) -> None:
    message_id = await queued_text(db)
    async with unit_of_work(db) as session:
        found = await session.scalar(select(Customer).where(Customer.phone == PHONE))
        assert found is not None
        found.opted_out_at = utcnow()

    outcome = await send_text(job_ctx, str(message_id))

    assert outcome == "blocked"
    assert twilio.requests == []
    row = await outbox_row(db, message_id)
    assert row.status is MessageStatus.blocked
    assert row.attempts == 0
    assert row.error is not None


async def test_unsubscribed_recipient_fails_for_good_and_opts_the_customer_out(
    db: Sessions, twilio: FakeTwilio, job_ctx: dict[str, Any]
) -> None:
    twilio.reject_to(PHONE, code=21610)
    message_id = await queued_text(db)

    outcome = await send_text(job_ctx, str(message_id))
    again = await send_text(job_ctx, str(message_id))

    assert outcome == "failed: recipient opted out"
    assert again == "skipped: already failed"
    assert len(twilio.requests) == 1
    row = await outbox_row(db, message_id)
    assert row.status is MessageStatus.failed
    assert row.error is not None
    assert "21610" in row.error
    assert (await customer(db)).opted_out_at is not None


async def test_transient_error_is_retried_then_sent(
    db: Sessions, twilio: FakeTwilio, job_ctx: dict[str, Any]
) -> None:
    twilio.fail_next(status=500)
    message_id = await queued_text(db)

    with pytest.raises(Retry):
        await send_text(job_ctx, str(message_id))
    waiting = await outbox_row(db, message_id)
    outcome = await send_text(job_ctx, str(message_id))

    assert waiting.status is MessageStatus.queued
    assert waiting.attempts == 1
    assert waiting.error is not None
    assert "500" in waiting.error
    assert outcome == "sent"
    row = await outbox_row(db, message_id)
    assert (row.status, row.attempts, row.error) == (MessageStatus.sent, 2, None)
    assert len(twilio.messages) == 1


async def test_transient_errors_give_up_after_five_attempts(
    db: Sessions, twilio: FakeTwilio, job_ctx: dict[str, Any]
) -> None:
    twilio.fail_next(MAX_ATTEMPTS, status=503)
    message_id = await queued_text(db)

    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(Retry):
            await send_text(job_ctx, str(message_id))
    outcome = await send_text(job_ctx, str(message_id))

    assert outcome == f"failed after {MAX_ATTEMPTS} attempts"
    row = await outbox_row(db, message_id)
    assert (row.status, row.attempts) == (MessageStatus.failed, MAX_ATTEMPTS)
    assert twilio.messages == []


async def test_sweep_enqueues_a_stale_queued_text_once_and_fails_stuck_sends(
    db: Sessions, job_ctx: dict[str, Any]
) -> None:
    fresh = await queued_text(db, body="fresh")
    stale = await queued_text(db, body="stale")
    stuck = await queued_text(db, body="stuck")
    long_ago = utcnow() - timedelta(minutes=20)
    async with unit_of_work(db) as session:
        (await session.get_one(OutboundMessage, stale)).created_at = long_ago
        stuck_row = await session.get_one(OutboundMessage, stuck)
        stuck_row.created_at = stuck_row.status_updated_at = long_ago
        stuck_row.status = MessageStatus.sending

    first = await sweep_outbox(job_ctx)
    second = await sweep_outbox(job_ctx)

    assert (first, second) == (1, 0)  # job id text:{id} keeps the second sweep a no-op
    app: AppContext = job_ctx["app"]
    jobs = await app.queue.queued_jobs()
    assert [(job.function, job.args) for job in jobs] == [("send_text", (str(stale),))]
    assert (await outbox_row(db, fresh)).status is MessageStatus.queued
    assert (await outbox_row(db, stuck)).status is MessageStatus.failed


async def test_delivery_reports_only_move_a_text_forward(
    db: Sessions, twilio: FakeTwilio, job_ctx: dict[str, Any]
) -> None:
    message_id = await queued_text(db)
    await send_text(job_ctx, str(message_id))
    sid = twilio.messages[0]["sid"]
    applied: list[bool] = []

    for status in ("queued", "delivered", "sent", "undelivered", "teleported"):
        async with unit_of_work(db) as session:
            changed = await apply_delivery_status(
                session, provider_message_id=sid, status=status, error_code=None, now=utcnow()
            )
            applied.append(changed is not None)

    assert applied == [False, True, False, False, False]
    row = await outbox_row(db, message_id)
    assert row.status is MessageStatus.delivered
    assert row.status_updated_at is not None


async def test_undelivered_report_with_21610_opts_the_customer_out(
    db: Sessions, twilio: FakeTwilio, job_ctx: dict[str, Any]
) -> None:
    message_id = await queued_text(db)
    await send_text(job_ctx, str(message_id))

    async with unit_of_work(db) as session:
        changed = await apply_delivery_status(
            session,
            provider_message_id=twilio.messages[0]["sid"],
            status="undelivered",
            error_code="21610",
            now=utcnow(),
        )

    assert changed is not None
    row = await outbox_row(db, message_id)
    assert row.status is MessageStatus.undelivered
    assert row.error == "twilio delivery error 21610"
    assert (await customer(db)).opted_out_at is not None


async def test_report_for_an_unknown_message_changes_nothing(db: Sessions) -> None:
    async with unit_of_work(db) as session:
        changed = await apply_delivery_status(
            session,
            provider_message_id="SM" + "f" * 32,
            status="Delivered",
            error_code=None,
            now=utcnow(),
        )

    assert changed is None
