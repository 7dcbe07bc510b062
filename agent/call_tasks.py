"""Jobs for RingCentral calls: forward a ringing staff-line call; analyse a finished call's recording.

Register both in the arq worker: `forward_ringing_call`, `analyse_call_recording`
(enqueued by `agent.call_log` under those names).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from agent.brain import Role
from agent.call_log import ForwardReason
from agent.cost import PriceTable
from agent.engine import ConversationEngine
from agent.models import Conversation, Message
from agent.recordings import analyse_transcript, build_transcriber
from agent.sentiment import build_scorer
from booking_tools.locations.service import get_location
from hibachi.context import AppContext, utcnow
from hibachi.db import unit_of_work
from telephony.ringcentral.call_control import CallControlError, RingCentralCalls
from telephony.ringcentral.sessions import RINGING

log = logging.getLogger(__name__)

CALLS_CLIENT = "ringcentral_calls"
FORWARD_NOTES = {
    ForwardReason.after_hours: "Rang the staff line after hours; forwarded to the agent.",
    ForwardReason.unanswered: "Unanswered on the staff line; forwarded to the agent.",
}


class RingCentralNotConfigured(RuntimeError):
    pass


def calls_client(app: AppContext) -> RingCentralCalls:
    """The app's RingCentral Call Control client, built on first use."""
    client = app.extras.get(CALLS_CLIENT)
    if client is None:
        client = RingCentralCalls.from_settings(app.settings)
        if client is None:
            raise RingCentralNotConfigured("RingCentral server URL, client id and JWT are required")
        app.extras[CALLS_CLIENT] = client
    assert isinstance(client, RingCentralCalls)
    return client


async def forward_ringing_call(ctx: dict[str, Any], telephony_session_id: str, reason: str) -> bool:
    """Forward a still-ringing staff-line call to its location's agent number; True if forwarded."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.external_id == telephony_session_id)
        )
        if conversation is None:
            return False
        details = conversation.call_details
        location = await get_location(session, slug=conversation.location_slug)
    if details.get("status") not in RINGING or details.get("answered") or "forward" in details:
        return False
    try:
        await calls_client(app).forward(
            telephony_session_id=telephony_session_id,
            party_id=str(details["party_id"]),
            phone_number=location.agent_phone,
        )
    except CallControlError as exc:
        if exc.http_status is None or exc.http_status >= 500 or exc.http_status == 429:
            raise  # arq retries
        log.info("forward of %s refused (%s): the call moved on", telephony_session_id, exc.code)
        await _note(app, telephony_session_id, {"forward_failed": exc.code or str(exc.http_status)})
        return False
    forward = {"to": location.agent_phone, "reason": reason, "at": utcnow().isoformat()}
    await _note(app, telephony_session_id, {"forward": forward}, summary=FORWARD_NOTES.get(reason))
    return True


async def _note(
    app: AppContext, telephony_session_id: str, facts: dict[str, Any], *, summary: str | None = None
) -> None:
    async with unit_of_work(app.sessions) as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.external_id == telephony_session_id).with_for_update()
        )
        if conversation is None:
            return
        conversation.call_details = {**conversation.call_details, **facts}
        if summary and not conversation.summary:
            conversation.summary = summary


async def analyse_call_recording(ctx: dict[str, Any], telephony_session_id: str) -> str:
    """Transcribe and analyse a finished call's recording into its conversation; returns the outcome."""
    app: AppContext = ctx["app"]
    async with app.sessions() as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.external_id == telephony_session_id)
        )
        if conversation is None:
            return "unknown call"
        if "analysis" in conversation.call_details:
            return "already analysed"
        recording_ids = list(conversation.call_details.get("recordings") or [])
    client = calls_client(app)
    if not recording_ids:
        recording_ids = await client.recording_ids(telephony_session_id=telephony_session_id)
    if not recording_ids:
        await _note(app, telephony_session_id, {"analysis": None})
        return "no recording"
    recording = await client.fetch_recording(recording_ids[0])
    transcription = await build_transcriber(app.settings).transcribe(recording)
    scored = await build_scorer(app.settings).score(transcription.text)
    prices = PriceTable.load(app.settings.hibachi_price_table)
    async with unit_of_work(app.sessions) as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.external_id == telephony_session_id).with_for_update()
        )
        if conversation is None or "analysis" in conversation.call_details:
            return "already analysed"
        location = await get_location(session, slug=conversation.location_slug)
        details = dict(conversation.call_details)
        started_at = datetime.fromisoformat(
            str(details.get("started_at") or conversation.created_at.isoformat())
        )
        notes = [FORWARD_NOTES[details["forward"]["reason"]]] if details.get("forward") else []
        analysis = await analyse_transcript(
            session,
            customer_phone=conversation.customer_phone,
            transcript=transcription.text,
            seconds=transcription.seconds,
            sentiment=scored.value,
            started_at=started_at,
            timezone=location.timezone,
            notes=notes,
        )
        message = Message(
            conversation_id=conversation.id,
            role=Role.customer,
            text=transcription.text,
            created_at=conversation.ended_at or utcnow(),
            provider="ringcentral",
            provider_message_id=f"recording:{recording.recording_id}",
            sentiment=scored.value,
            delivery="voice",
            marks={"source": "recording", "stt": transcription.engine},
        )
        session.add(message)
        await session.flush()
        charge = ConversationEngine.charge
        charge(
            session,
            conversation.id,
            message.id,
            prices.stt(engine=transcription.engine, seconds=transcription.seconds),
        )
        if scored.usage is not None:
            usage = scored.usage
            charge(
                session,
                conversation.id,
                message.id,
                prices.llm_usage(usage),
            )
        details["analysis"] = {
            **analysis.as_json(),
            "recording_id": recording.recording_id,
            "stt": transcription.engine,
            "seconds": transcription.seconds,
        }
        conversation.call_details = details
        conversation.summary = analysis.summary
    return "missed opportunity" if analysis.missed_opportunity else "analysed"


WEBHOOK_PATH = "/ringcentral/webhook"
WEBHOOK_FILTERS = [
    "/restapi/v1.0/account/~/extension/~/message-store/instant?type=SMS",
    "/restapi/v1.0/account/~/telephony/sessions",
]
RENEW_WITHIN = timedelta(days=2)


async def keep_ringcentral_webhook(ctx: dict[str, Any]) -> str:
    """Cron: make sure RingCentral delivers texts and call events to us (create or renew the
    WebHook subscription to `PUBLIC_BASE_URL/ringcentral/webhook`); a no-op when RingCentral
    or its verification token is not configured."""
    app: AppContext = ctx["app"]
    settings = app.settings
    token = settings.ringcentral_verification_token
    if not (settings.ringcentral_enabled and settings.ringcentral_jwt and token):
        return "not configured"
    address = settings.public_base_url.rstrip("/") + WEBHOOK_PATH
    try:
        done: str = await calls_client(app).ensure_webhook(
            address=address,
            event_filters=WEBHOOK_FILTERS,
            verification_token=token,
            renew_within=RENEW_WITHIN,
        )
    except CallControlError as exc:
        log.warning("ringcentral webhook subscription for %s failed: %s", address, exc)
        return "failed"
    if done != "active":
        log.info("ringcentral webhook subscription for %s %s", address, done)
    return done
