"""The `sms` channel: the caller texts the agent number through the provider's real webhook.

Bay Area numbers are Twilio: each text is a form POST to `/twilio/sms` signed exactly as
Twilio signs it, and the reply may come back in the TwiML. Sacramento numbers are
RingCentral: each text is an instant-SMS notification with the verification token, and
replies always leave by REST. Either way the agent's answer to a text is read from the
database (the agent messages that reply to it) once the engine is idle, so replies sent
later by REST through the outbox are collected too; the outbox is then delivered to the
provider fakes.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from agent.brain import Role
from agent.engine import ConversationEngine
from agent.models import Message
from evals.drivers.base import AgentTurn
from evals.environment import EvalEnvironment
from telephony.twilio.client_sim import sms_webhook_form, twiml_messages
from telephony.twilio.signature import SIGNATURE_HEADER, sign

RINGCENTRAL_EVENT = "/restapi/v1.0/account/~/extension/~/message-store/instant?type=SMS"


class SmsDriver:
    """One text thread between `caller_phone` and `agent_phone`, over `provider`'s webhook."""

    def __init__(
        self, *, env: EvalEnvironment, caller_phone: str, agent_phone: str, provider: str = "twilio"
    ) -> None:
        if provider not in ("twilio", "ringcentral"):
            raise ValueError(f"no SMS webhook for provider {provider!r}")
        self.env = env
        self.caller_phone = caller_phone
        self.agent_phone = agent_phone
        self.provider = provider
        self.settings = env.ctx.settings
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=env.app),
            base_url=self.settings.public_base_url,
            timeout=120.0,
        )

    async def open(self) -> AgentTurn:
        return AgentTurn()

    async def send(self, text: str) -> AgentTurn:
        started = time.perf_counter()
        if self.provider == "twilio":
            message_id, in_twiml = await self._post_twilio(text)
        else:
            message_id, in_twiml = await self._post_ringcentral(text), []
        answered = time.perf_counter()
        engine: ConversationEngine = self.env.ctx.extras["engine"]
        await engine.idle()
        replies = await self._replies_to(message_id)
        if replies and not in_twiml:
            answered = time.perf_counter()  # it left by REST once the turn was written
        await self.env.deliver_outbox()
        return AgentTurn(texts=replies, latency_s=answered - started if replies else None)

    async def press(self, digits: str) -> AgentTurn:
        return await self.send(digits)

    async def close(self) -> None:
        engine: ConversationEngine = self.env.ctx.extras["engine"]
        await engine.idle()
        await self.env.deliver_outbox()
        await self.client.aclose()

    async def _post_twilio(self, text: str) -> tuple[str, list[str]]:
        form = sms_webhook_form(
            account_sid=self.settings.twilio_account_sid,
            from_phone=self.caller_phone,
            to_phone=self.agent_phone,
            body=text,
        )
        url = self.settings.public_base_url.rstrip("/") + "/twilio/sms"
        signature = sign(url, form, self.settings.twilio_auth_token)
        response = await self.client.post("/twilio/sms", data=form, headers={SIGNATURE_HEADER: signature})
        if response.status_code != 200:
            raise RuntimeError(f"/twilio/sms answered {response.status_code}: {response.text}")
        return form["MessageSid"], twiml_messages(response.text)

    async def _post_ringcentral(self, text: str) -> str:
        message_id = str(uuid.uuid4().int)[:13]
        event: dict[str, Any] = {
            "uuid": str(uuid.uuid4().int)[:19],
            "event": RINGCENTRAL_EVENT,
            "subscriptionId": str(uuid.uuid4()),
            "body": {
                "id": message_id,
                "to": [{"phoneNumber": self.agent_phone}],
                "from": {"phoneNumber": self.caller_phone},
                "type": "SMS",
                "direction": "Inbound",
                "subject": text,
                "messageStatus": "Received",
            },
        }
        response = await self.client.post(
            "/ringcentral/webhook",
            json=event,
            headers={"Verification-Token": self.settings.ringcentral_verification_token or ""},
        )
        if response.status_code != 200:
            raise RuntimeError(f"/ringcentral/webhook answered {response.status_code}: {response.text}")
        return message_id

    async def _replies_to(self, provider_message_id: str) -> list[str]:
        async with self.env.ctx.sessions() as session:
            inbound = await session.scalar(
                select(Message.id).where(
                    Message.provider == self.provider, Message.provider_message_id == provider_message_id
                )
            )
            if inbound is None:
                raise RuntimeError(f"the agent did not store the text {provider_message_id}")
            rows = await session.scalars(
                select(Message.text)
                .where(Message.reply_to_id == inbound, Message.role == Role.agent)
                .order_by(Message.id)
            )
            return list(rows)
