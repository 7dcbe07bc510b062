"""`X-Twilio-Signature` verification with the SDK's `RequestValidator`."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from hibachi.errors import Forbidden
from hibachi.settings import Settings

SIGNATURE_HEADER = "X-Twilio-Signature"


class InvalidSignature(Forbidden):
    pass


def public_url(settings: Settings, request: Request) -> str:
    """The URL Twilio requested: `PUBLIC_BASE_URL` + path (+ query), not our internal address."""
    url = settings.public_base_url.rstrip("/") + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url


async def verified_form(request: Request, settings: Settings) -> FormData:
    """The posted form, if Twilio signed it with our auth token; otherwise 403."""
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER}")
    form = await request.form()
    validator = RequestValidator(settings.twilio_auth_token)
    if not validator.validate(public_url(settings, request), form, signature):
        raise InvalidSignature(f"{SIGNATURE_HEADER} does not match this request")
    return form


def sign(url: str, params: dict[str, str], auth_token: str) -> str:
    """The `X-Twilio-Signature` Twilio would send for a form POST of `params` to `url`."""
    signature: str = RequestValidator(auth_token).compute_signature(url, params)
    return signature
