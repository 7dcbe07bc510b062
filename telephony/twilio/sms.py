"""`POST /twilio/sms`: a customer's text, signed by Twilio, answered by the agent.

The text is stored before anything else (idempotent on `MessageSid`); the reply goes
back in the TwiML response when the agent answers within
`HIBACHI_SMS_REPLY_WAIT_SECONDS`, otherwise by REST through the outbox as soon as it
is ready. Never both, never neither.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from twilio.twiml.messaging_response import MessagingResponse

from agent.engine import ConversationEngine, InboundText
from booking_tools.customers.phone import to_e164
from hibachi.deps import CtxDep
from hibachi.errors import RuleViolation
from telephony.twilio.signature import verified_form

router = APIRouter(tags=["twilio"])


class MissingField(RuleViolation):
    pass


def twiml(reply: str | None) -> Response:
    response = MessagingResponse()
    if reply:
        response.message(reply)
    return Response(content=str(response), media_type="text/xml")


@router.post("/twilio/sms")
async def inbound_sms(request: Request, ctx: CtxDep) -> Response:
    """Twilio's incoming-message webhook (form POST with `X-Twilio-Signature`)."""
    form = await verified_form(request, ctx.settings)
    fields = {name: str(form.get(name) or "") for name in ("MessageSid", "From", "To", "Body", "NumSegments")}
    for name in ("MessageSid", "From", "To"):
        if not fields[name]:
            raise MissingField(f"{name} is required")
    engine: ConversationEngine = ctx.extras["engine"]
    accepted = await engine.accept_text(
        InboundText(
            provider="twilio",
            provider_message_id=fields["MessageSid"],
            customer_phone=to_e164(fields["From"]),
            agent_phone=to_e164(fields["To"]),
            text=fields["Body"],
            segments=int(fields["NumSegments"]) if fields["NumSegments"].isdigit() else 1,
        )
    )
    if accepted.duplicate:
        # A retry of a text we already have: its reply is (or will be) sent once, by REST.
        return twiml(None)
    engine.spawn_drain(accepted.conversation_id)
    reply = await engine.wait_for_reply(accepted.message_id, ctx.settings.hibachi_sms_reply_wait_seconds)
    return twiml(reply)
