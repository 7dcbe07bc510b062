"""`POST /ringcentral/webhook`: subscription handshake, instant SMS and telephony-session events.

RingCentral signs nothing: the `Verification-Token` we set on the subscription is the
only proof a notification is genuine, so without `RINGCENTRAL_VERIFICATION_TOKEN`
every notification is refused. Replies leave by REST (RingCentral has no synchronous
reply), through the outbox. Telephony-session events are logged as voice
conversations by `agent.call_log`, which also schedules forwarding and recording jobs.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import APIRouter, Request, Response

from agent.call_log import record_session_event
from agent.engine import ConversationEngine, InboundText
from booking_tools.customers.phone import to_e164
from hibachi.context import AppContext
from hibachi.db import unit_of_work
from hibachi.deps import CtxDep
from hibachi.errors import Forbidden, RuleViolation
from telephony.ringcentral.sessions import InvalidSessionEvent, is_session_event, parse_session_event

router = APIRouter(tags=["ringcentral"])

INSTANT_SMS = "/message-store/instant"


class InvalidVerificationToken(Forbidden):
    pass


class InvalidNotification(RuleViolation):
    pass


@router.post("/ringcentral/webhook")
async def notification(request: Request, ctx: CtxDep) -> Response:
    """Echo `Validation-Token` on subscription; otherwise verify and take the event."""
    validation = request.headers.get("Validation-Token")
    if validation is not None:
        return Response(
            status_code=200, headers={"Validation-Token": validation}, media_type="application/json"
        )
    expected = ctx.settings.ringcentral_verification_token
    given = request.headers.get("Verification-Token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise InvalidVerificationToken("missing or wrong Verification-Token")
    try:
        payload = json.loads(await request.body())
    except ValueError as exc:
        raise InvalidNotification("the notification body is not JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidNotification("the notification body must be a JSON object")
    body = payload.get("body")
    if INSTANT_SMS in str(payload.get("event", "")) and isinstance(body, dict):
        inbound = _inbound_sms(body)
        if inbound is not None:
            engine: ConversationEngine = ctx.extras["engine"]
            accepted = await engine.accept_text(inbound)
            if not accepted.duplicate:
                engine.spawn_drain(accepted.conversation_id)
    elif is_session_event(str(payload.get("event", ""))) and isinstance(body, dict):
        await _session_event(ctx, body)
    return Response(status_code=200, media_type="application/json")


async def _session_event(ctx: AppContext, body: dict[str, Any]) -> None:
    try:
        event = parse_session_event(body)
    except InvalidSessionEvent as exc:
        raise InvalidNotification(str(exc)) from exc
    async with unit_of_work(ctx.sessions, queue=ctx.queue) as session:
        await record_session_event(session, event, queue=ctx.queue)


def _inbound_sms(body: dict[str, Any]) -> InboundText | None:
    if body.get("type") != "SMS" or body.get("direction") != "Inbound":
        return None
    try:
        sender = body["from"]["phoneNumber"]
        recipient = body["to"][0]["phoneNumber"]
        message_id = str(body["id"])
    except (KeyError, IndexError, TypeError) as exc:
        raise InvalidNotification("an SMS event needs id, from.phoneNumber and to[].phoneNumber") from exc
    return InboundText(
        provider="ringcentral",
        provider_message_id=message_id,
        customer_phone=to_e164(str(sender)),
        agent_phone=to_e164(str(recipient)),
        text=str(body.get("subject") or ""),
    )
