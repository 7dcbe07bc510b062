"""`POST /twilio/voice`: answer an inbound call by connecting it to our Media Streams socket.

The answer is TwiML `<Connect><Stream url="wss://<public host>/twilio/media">` with
`<Parameter>`s `from`, `to`, `call_sid` and `token` (protocols.md 1.2). The stream URL
cannot carry a query string, so the socket is authenticated by that per-call token: an
HMAC-SHA256 of the CallSid keyed with the Twilio auth token (`stream_token`,
`verify_stream_token`). Twilio also signs the socket handshake over the `wss://` URL
with empty params (`verify_stream_signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Request, Response
from twilio.twiml.voice_response import Connect, VoiceResponse

from booking_tools.customers.phone import InvalidPhone, to_e164
from hibachi.deps import CtxDep
from hibachi.errors import RuleViolation
from hibachi.settings import Settings
from telephony.twilio.signature import sign, verified_form

MEDIA_PATH = "/twilio/media"
CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")

router = APIRouter(tags=["twilio"])


class InvalidCallWebhook(RuleViolation):
    pass


async def get_settings(ctx: CtxDep) -> Settings:
    return ctx.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def stream_url(settings: Settings) -> str:
    """The Media Streams URL Twilio connects to: `PUBLIC_BASE_URL` as ws(s) + `/twilio/media`."""
    parts = urlsplit(settings.public_base_url)
    scheme = "ws" if parts.scheme == "http" else "wss"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + MEDIA_PATH, "", ""))


def stream_token(settings: Settings, call_sid: str) -> str:
    """The per-call token we hand Twilio in `<Parameter name="token">` (hex HMAC-SHA256)."""
    key = settings.twilio_auth_token.encode()
    return hmac.new(key, call_sid.encode(), hashlib.sha256).hexdigest()


def verify_stream_token(settings: Settings, call_sid: str, token: str | None) -> bool:
    """True if `token` (from `start.customParameters`) was issued by us for `call_sid`."""
    if not token:
        return False
    return hmac.compare_digest(stream_token(settings, call_sid), token)


def verify_stream_signature(settings: Settings, signature: str | None) -> bool:
    """True if a handshake's `X-Twilio-Signature` is Twilio's over our stream URL, no params."""
    if not signature:
        return False
    return hmac.compare_digest(sign(stream_url(settings), {}, settings.twilio_auth_token), signature)


def _phone(raw: str) -> str:
    """E.164 when it is a phone number; Twilio also sends `client:alice`, SIP URIs, `anonymous`."""
    try:
        return to_e164(raw)
    except InvalidPhone:
        return raw


def connect_twiml(settings: Settings, *, call_sid: str, from_phone: str, to_phone: str) -> str:
    """TwiML that bridges the call to our bidirectional Media Streams socket."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url(settings))
    stream.parameter(name="from", value=from_phone)
    stream.parameter(name="to", value=to_phone)
    stream.parameter(name="call_sid", value=call_sid)
    stream.parameter(name="token", value=stream_token(settings, call_sid))
    response.append(connect)
    return str(response)


@router.post("/twilio/voice")
async def inbound_call(request: Request, settings: SettingsDep) -> Response:
    """Twilio's incoming-call webhook (form POST with `X-Twilio-Signature`)."""
    form = await verified_form(request, settings)
    call_sid, from_raw, to_raw = (str(form.get(name) or "") for name in ("CallSid", "From", "To"))
    if not CALL_SID.match(call_sid):
        raise InvalidCallWebhook(f"CallSid {call_sid!r} is not a Twilio call sid")
    if not from_raw or not to_raw:
        raise InvalidCallWebhook("From and To are required")
    xml = connect_twiml(settings, call_sid=call_sid, from_phone=_phone(from_raw), to_phone=_phone(to_raw))
    return Response(content=xml, media_type="text/xml")
