"""`POST /twilio/status`: delivery reports for texts we sent (monotonic status updates)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from booking_tools.messaging.delivery import apply_delivery_status
from hibachi.deps import CtxDep, NowDep, SessionDep
from telephony.twilio.signature import verified_form

router = APIRouter(tags=["twilio"])


@router.post("/twilio/status", status_code=204)
async def message_status(request: Request, ctx: CtxDep, session: SessionDep, now: NowDep) -> Response:
    """Twilio posts each status change of an outbound text; out-of-order reports are ignored."""
    form = await verified_form(request, ctx.settings)
    sid = str(form.get("MessageSid") or "")
    status = str(form.get("MessageStatus") or form.get("SmsStatus") or "")
    if sid and status:
        error = form.get("ErrorCode")
        await apply_delivery_status(
            session, provider_message_id=sid, status=status, error_code=str(error) if error else None, now=now
        )
    return Response(status_code=204)
