"""Post a correctly signed Twilio SMS webhook to a running server (`hibachi sms`)."""

from __future__ import annotations

import uuid
from xml.etree import ElementTree

import httpx

from telephony.sms_segments import count_segments
from telephony.twilio.signature import SIGNATURE_HEADER, sign


def sms_webhook_form(*, account_sid: str, from_phone: str, to_phone: str, body: str) -> dict[str, str]:
    """The form Twilio posts for an inbound SMS (the keys real webhooks carry)."""
    sid = "SM" + uuid.uuid4().hex
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": account_sid,
        "From": from_phone,
        "To": to_phone,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": str(count_segments(body)),
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }


def twiml_messages(xml: str) -> list[str]:
    """The `<Message>` texts of a TwiML messaging response."""
    root = ElementTree.fromstring(xml)
    return [element.text or "" for element in root.iter("Message")]


def post_sms(
    *,
    server_url: str,
    public_base_url: str,
    auth_token: str,
    form: dict[str, str],
    timeout: float = 60.0,
) -> httpx.Response:
    """POST `form` to `server_url`/twilio/sms, signed for the URL Twilio would have used."""
    signature = sign(public_base_url.rstrip("/") + "/twilio/sms", form, auth_token)
    return httpx.post(
        server_url.rstrip("/") + "/twilio/sms",
        data=form,
        headers={SIGNATURE_HEADER: signature},
        timeout=timeout,
    )
