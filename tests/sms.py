"""Helpers for driving the agent by text: signed Twilio webhooks and RingCentral events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.brain import BrainEvent, BrainRequest, TextDelta
from agent.models import Conversation, Message
from agent.tools.base import ToolBox
from hibachi.settings import Settings
from telephony.twilio.client_sim import sms_webhook_form, twiml_messages
from telephony.twilio.signature import SIGNATURE_HEADER, sign
from tests.conftest import PUBLIC_BASE_URL, RC_VERIFICATION_TOKEN

CUSTOMER = "+14085550123"
BAY_AREA_AGENT = "+14085550199"
SACRAMENTO_AGENT = "+19165550199"
SMS_URL = f"{PUBLIC_BASE_URL}/twilio/sms"


def twilio_form(body: str, *, from_phone: str = CUSTOMER, to_phone: str = BAY_AREA_AGENT) -> dict[str, str]:
    return sms_webhook_form(account_sid="AC" + "0" * 32, from_phone=from_phone, to_phone=to_phone, body=body)


async def post_twilio(client: httpx.AsyncClient, settings: Settings, form: dict[str, str]) -> httpx.Response:
    """POST a form to /twilio/sms signed exactly as Twilio would sign it."""
    signature = sign(SMS_URL, form, settings.twilio_auth_token)
    return await client.post("/twilio/sms", data=form, headers={SIGNATURE_HEADER: signature})


async def text_agent(
    client: httpx.AsyncClient, settings: Settings, body: str, *, from_phone: str = CUSTOMER
) -> str:
    """Text the Bay Area line and return the reply the webhook answered with."""
    response = await post_twilio(client, settings, twilio_form(body, from_phone=from_phone))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return " ".join(twiml_messages(response.text))


def ringcentral_sms_event(
    body: str,
    *,
    from_phone: str = "+19165550123",
    to_phone: str = SACRAMENTO_AGENT,
    message_id: str | None = None,
) -> dict[str, Any]:
    """An instant-SMS notification as RingCentral delivers it to a webhook."""
    return {
        "uuid": str(uuid.uuid4().int)[:19],
        "event": "/restapi/v1.0/account/811112222/extension/811112222/message-store/instant?type=SMS",
        "timestamp": "2026-11-22T17:20:11.512Z",
        "subscriptionId": str(uuid.uuid4()),
        "ownerId": "811112222",
        "body": {
            "id": message_id or str(uuid.uuid4().int)[:13],
            "to": [{"phoneNumber": to_phone, "name": "My Hibachi Sacramento"}],
            "from": {"phoneNumber": from_phone},
            "type": "SMS",
            "creationTime": "2026-11-22T17:20:10.000Z",
            "lastModifiedTime": "2026-11-22T17:20:10.000Z",
            "readStatus": "Unread",
            "priority": "Normal",
            "direction": "Inbound",
            "availability": "Alive",
            "subject": body,
            "messageStatus": "Received",
            "conversation": {"id": "7711223344556677889"},
        },
    }


async def post_ringcentral(
    client: httpx.AsyncClient, event: dict[str, Any], *, token: str = RC_VERIFICATION_TOKEN
) -> httpx.Response:
    return await client.post(
        "/ringcentral/webhook",
        json=event,
        headers={"Verification-Token": token, "User-Agent": "RingCentral-Webhook/8.3"},
    )


async def transcript(db: async_sessionmaker[AsyncSession], phone: str = CUSTOMER) -> list[tuple[str, str]]:
    """Every message with `phone`, oldest first, as (role, text)."""
    async with db() as session:
        rows = await session.execute(
            select(Message.role, Message.text)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Conversation.customer_phone == phone)
            .order_by(Message.id)
        )
        return [(role.value, body) for role, body in rows.all()]


class EchoBrain:
    """A stand-in brain that answers "echo: <text>" after `delay` seconds (engine tests)."""

    name = "echo"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.turns: list[tuple[str, float, float]] = []  # (text, started, finished)

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        started = time.monotonic()
        await asyncio.sleep(self.delay)
        self.turns.append((request.text, started, time.monotonic()))
        yield TextDelta(f"echo: {request.text}")
