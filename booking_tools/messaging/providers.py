"""SMS providers behind one narrow interface, built on the real twilio and ringcentral SDKs.

Both SDKs are synchronous (`requests`), so each send runs in a worker thread. A sender
raises only `PermanentSendError` (retrying cannot help) or `TransientSendError` (try
again later) for provider failures; the outbox job owns retries and bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from ringcentral.http import ApiException
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from hibachi.settings import DEV_TWILIO_AUTH_TOKEN, Settings
from telephony.ringcentral.platform import RingCentralSession, error_body
from telephony.ringcentral.platform import http_status as ringcentral_http_status
from telephony.sms_segments import count_segments

log = logging.getLogger(__name__)

SEND_TIMEOUT = 15.0  # seconds, per HTTP request
RINGCENTRAL_SMS_PATH = "/restapi/v1.0/account/~/extension/~/sms"
TWILIO_OPTED_OUT = 21610  # "Attempt to send to unsubscribed recipient"
RETRYABLE_HTTP = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a provider said when it accepted a text."""

    provider_message_id: str
    segments: int
    status: str  # the provider's own word: Twilio "queued"/"accepted", RingCentral "Queued"


class SendError(Exception):
    """A provider did not take the text; `code` is the provider's error code, if any."""

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class PermanentSendError(SendError):
    """Retrying cannot help: invalid number, rejected content, bad credentials."""


class RecipientOptedOut(PermanentSendError):
    """The recipient texted STOP to this sender (Twilio 21610); never retry."""


class TransientSendError(SendError):
    """The provider was unreachable, throttled or failing; the same text may go through later."""


class SmsSender(Protocol):
    """Sends one text through one provider.

    `send` returns once the provider has accepted the text (not delivered it) and never
    blocks the event loop. `status_callback` is the URL the provider should post delivery
    updates to; senders with `supports_status_callback = False` ignore it.
    """

    provider: str
    supports_status_callback: bool

    async def send(
        self, *, from_phone: str, to_phone: str, body: str, status_callback: str | None
    ) -> SendResult: ...


def _is_transient(http_status: int) -> bool:
    return http_status >= 500 or http_status in RETRYABLE_HTTP


# -- Twilio ----------------------------------------------------------------------------


class TwilioSender:
    """Twilio Programmable Messaging through `twilio.rest.Client`."""

    provider = "twilio"
    supports_status_callback = True

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_base: str | None = None,
        timeout: float = SEND_TIMEOUT,
    ) -> None:
        http_client = TwilioHttpClient(timeout=timeout)
        self._client = TwilioClient(account_sid, auth_token, http_client=http_client)
        if api_base:  # a local protocol server (tests, benchmarks, evals)
            self._client.api.base_url = api_base.rstrip("/")

    async def send(
        self, *, from_phone: str, to_phone: str, body: str, status_callback: str | None
    ) -> SendResult:
        return await asyncio.to_thread(self._send, from_phone, to_phone, body, status_callback)

    def _send(self, from_phone: str, to_phone: str, body: str, status_callback: str | None) -> SendResult:
        options: dict[str, Any] = {"status_callback": status_callback} if status_callback else {}
        try:
            message = self._client.messages.create(to=to_phone, from_=from_phone, body=body, **options)
        except TwilioRestException as exc:
            raise _twilio_error(exc.status, exc.code, exc.msg) from exc
        except TwilioServiceException as exc:
            raise _twilio_error(exc.status, exc.code, exc.detail or exc.title) from exc
        except requests.RequestException as exc:
            raise TransientSendError(f"twilio unreachable: {type(exc).__name__}") from exc
        if not message.sid:
            raise PermanentSendError("twilio accepted the text but returned no sid")
        return SendResult(
            provider_message_id=message.sid,
            segments=int(message.num_segments or 0) or count_segments(body),
            status=str(message.status or "queued"),
        )


def _twilio_error(http_status: int, code: int | None, message: str) -> SendError:
    text = f"twilio {code or http_status}: {message}"
    fields: dict[str, Any] = {"code": str(code) if code else None, "http_status": http_status}
    if code == TWILIO_OPTED_OUT:
        return RecipientOptedOut(text, **fields)
    if _is_transient(http_status):
        return TransientSendError(text, **fields)
    return PermanentSendError(text, **fields)


# -- RingCentral -----------------------------------------------------------------------


class RingCentralSender:
    """RingCentral SMS through the `ringcentral` SDK's Platform, logged in once by JWT.

    The login happens lazily on the first send and is shared by later sends; an expired
    access token is refreshed, and a token the server no longer accepts (401) triggers
    one fresh login and one retry of the same request.
    """

    provider = "ringcentral"
    supports_status_callback = False  # delivery updates come from message-store events

    def __init__(
        self,
        *,
        server_url: str,
        client_id: str,
        client_secret: str,
        jwt: str,
        timeout: float = SEND_TIMEOUT,
    ) -> None:
        self._session = RingCentralSession(
            server_url=server_url, client_id=client_id, client_secret=client_secret, jwt=jwt, timeout=timeout
        )

    async def send(
        self, *, from_phone: str, to_phone: str, body: str, status_callback: str | None
    ) -> SendResult:
        return await asyncio.to_thread(self._send, from_phone, to_phone, body)

    def _send(self, from_phone: str, to_phone: str, body: str) -> SendResult:
        payload = {
            "from": {"phoneNumber": from_phone},
            "to": [{"phoneNumber": to_phone}],
            "text": body,
        }
        try:
            response = self._session.call(lambda platform: platform.post(RINGCENTRAL_SMS_PATH, payload))
        except ApiException as exc:
            raise _ringcentral_error(exc) from exc
        record: dict[str, Any] = response.json_dict()
        return SendResult(
            provider_message_id=str(record["id"]),  # a JSON number here; strings elsewhere
            segments=count_segments(body),
            status=str(record.get("messageStatus", "Queued")),
        )


def _ringcentral_error(exc: ApiException) -> SendError:
    """Map an SDK error; never uses str(exc), which embeds the request's auth header."""
    http_status = ringcentral_http_status(exc)
    if http_status is None:
        cause = exc.__cause__ or exc.__context__
        return TransientSendError(f"ringcentral unreachable: {type(cause).__name__}")
    code, message = error_body(exc.api_response().response().text)
    text = f"ringcentral {http_status} {code}: {message}" if code else f"ringcentral {http_status}: {message}"
    if _is_transient(http_status):
        return TransientSendError(text, code=code, http_status=http_status)
    return PermanentSendError(text, code=code, http_status=http_status)


class LogSender:
    """The no-keys default for a provider that isn't configured: texts go to the log.

    Like a console e-mail backend: the outbox still records every text (with a
    `log-` provider id), so the product runs end to end without provider accounts.
    """

    supports_status_callback = False

    def __init__(self, provider: str) -> None:
        self.provider = provider

    async def send(
        self, *, from_phone: str, to_phone: str, body: str, status_callback: str | None
    ) -> SendResult:
        log.info(
            "text (%s not configured, logged only) %s -> %s: %s", self.provider, from_phone, to_phone, body
        )
        return SendResult(
            provider_message_id=f"log-{uuid.uuid4().hex}", segments=count_segments(body), status="sent"
        )


def build_senders(settings: Settings) -> dict[str, SmsSender]:
    """One sender per provider, keyed like `Location.sms_provider`; unconfigured ones log."""
    twilio_configured = settings.twilio_api_base or settings.twilio_auth_token != DEV_TWILIO_AUTH_TOKEN
    senders: dict[str, SmsSender] = {
        "twilio": TwilioSender(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            api_base=settings.twilio_api_base,
        )
        if twilio_configured
        else LogSender("twilio"),
        "ringcentral": LogSender("ringcentral"),
    }
    server_url, client_id = settings.ringcentral_server_url, settings.ringcentral_client_id
    secret, jwt = settings.ringcentral_client_secret, settings.ringcentral_jwt
    if server_url and client_id:
        if not secret or not jwt:
            raise ValueError(
                "RingCentral is configured; RINGCENTRAL_CLIENT_SECRET and RINGCENTRAL_JWT are required"
            )
        senders["ringcentral"] = RingCentralSender(
            server_url=server_url, client_id=client_id, client_secret=secret, jwt=jwt
        )
    return senders
