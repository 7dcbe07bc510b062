"""Texts leave through the real provider SDKs and come back as signed delivery reports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from twilio.request_validator import RequestValidator

from booking_tools.messaging.models import MessageStatus, OutboundMessage
from hibachi.settings import Settings
from telephony.fakes import FakeRingCentral, FakeTwilio
from tests.conftest import PUBLIC_BASE_URL
from tests.factories import create_booking

STATUS_URL = f"{PUBLIC_BASE_URL}/twilio/status"


async def only_text(db: async_sessionmaker[AsyncSession], phone: str) -> OutboundMessage:
    async with db() as session:
        [message] = await session.scalars(select(OutboundMessage).where(OutboundMessage.to_phone == phone))
        return message


def signed(settings: Settings, form: dict[str, str]) -> dict[str, str]:
    signature = RequestValidator(settings.twilio_auth_token).compute_signature(STATUS_URL, form)
    return {"X-Twilio-Signature": signature}


async def test_bay_area_deposit_link_goes_out_through_twilio(
    client: httpx.AsyncClient,
    db: async_sessionmaker[AsyncSession],
    fake_twilio: FakeTwilio,
    run_jobs: Callable[[], Awaitable[None]],
) -> None:
    booking = await create_booking(client, customer_phone="+14085550160")
    await run_jobs()
    [sent] = fake_twilio.messages
    assert sent["to"] == "+14085550160"
    assert sent["from"] == "+14085550199"
    assert booking["deposit"]["payment_url"] in sent["body"]
    assert sent["status_callback"] == STATUS_URL
    message = await only_text(db, "+14085550160")
    assert message.status == MessageStatus.sent
    assert message.provider_message_id == sent["sid"]


async def test_sacramento_texts_go_out_through_ringcentral(
    client: httpx.AsyncClient,
    db: async_sessionmaker[AsyncSession],
    fake_ringcentral: FakeRingCentral,
    run_jobs: Callable[[], Awaitable[None]],
) -> None:
    await create_booking(client, location="sacramento", customer_phone="+19165550161")
    await run_jobs()
    [sent] = fake_ringcentral.messages
    assert sent["from"]["phoneNumber"] == "+19165550199"
    assert sent["to"] == [{"phoneNumber": "+19165550161"}]
    message = await only_text(db, "+19165550161")
    assert message.status == MessageStatus.sent
    assert message.provider_message_id == str(sent["id"])


async def test_signed_delivery_report_moves_the_text_forward_only(
    client: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    db: async_sessionmaker[AsyncSession],
    settings: Settings,
    run_jobs: Callable[[], Awaitable[None]],
) -> None:
    await create_booking(client, customer_phone="+14085550162")
    await run_jobs()
    sid = (await only_text(db, "+14085550162")).provider_message_id
    assert sid is not None
    delivered = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": settings.twilio_account_sid}
    response = await anon.post("/twilio/status", data=delivered, headers=signed(settings, delivered))
    assert response.status_code == 204
    late = {"MessageSid": sid, "MessageStatus": "sent", "AccountSid": settings.twilio_account_sid}
    assert (await anon.post("/twilio/status", data=late, headers=signed(settings, late))).status_code == 204
    assert (await only_text(db, "+14085550162")).status == MessageStatus.delivered


async def test_unsigned_or_missigned_delivery_reports_are_rejected(
    client: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    db: async_sessionmaker[AsyncSession],
    settings: Settings,
    run_jobs: Callable[[], Awaitable[None]],
) -> None:
    await create_booking(client, customer_phone="+14085550163")
    await run_jobs()
    sid = (await only_text(db, "+14085550163")).provider_message_id
    assert sid is not None
    form = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    unsigned = await anon.post("/twilio/status", data=form)
    assert unsigned.status_code == 403
    assert unsigned.json()["error"] == "InvalidSignature"
    forged = await anon.post("/twilio/status", data=form, headers={"X-Twilio-Signature": "bm9wZQ=="})
    assert forged.status_code == 403
    assert (await only_text(db, "+14085550163")).status == MessageStatus.sent
