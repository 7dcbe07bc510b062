"""A local Twilio REST server: the Messages and Calls resources of API 2010-04-01, on the wire.

Speaks what the `twilio` SDK sends and reads (protocols.md sections 1.6 and 2.2):
form-encoded `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP Basic
`AccountSid:AuthToken`, answered 201 with snake_case Message JSON, and Twilio's classic
error body `{"code", "message", "more_info", "status"}` on failure. Error codes used:
20003 (auth), 20404 (not found), 21211 (invalid To), 21602/21603/21604 (missing
Body/From/To), 21606 (From not an SMS number of the account), 21610 (unsubscribed
recipient), 21617 (body over 1600 chars), 20429/20500/20503 (throttled, server errors).

Calls: `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` updates a live call
(form keys `Twiml`, `Url`, `Method`, `Status`; section 1.6) and answers 200 with Call
JSON. Any CallSid is taken as live until it is completed (`Status=completed`) or
`end_call()` is called; after that an update fails like Twilio's 21220.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from telephony.fakes.server import RecordedRequest, ServedFake
from telephony.sms_segments import count_segments

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32  # matches hibachi.settings.DEV_TWILIO_ACCOUNT_SID
DEFAULT_AUTH_TOKEN = "dev-twilio-auth-token"
API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600

E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# GSM 03.38: the basic table (one septet each; ESC itself excluded) and the extension
# table (two septets each: ESC + char). Anything else forces UCS-2.

ERROR_MESSAGES: dict[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21606: (
        "The From phone number {from_} is not a valid, SMS-capable inbound phone number "
        "or short code for your account."
    ),
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21220: "Call is not in-progress. Cannot redirect.",
    21218: "Invalid Status for update: {update_status}",
    21205: "Url or Twiml parameter is required.",  # code assumed; Twilio's exact one unverified
}
CALL_UPDATE_STATUSES = frozenset({"canceled", "completed"})
SERVER_ERROR_CODES = {429: 20429, 500: 20500, 503: 20503}


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment)  # "Thu, 05 Mar 2026 17:20:10 +0000"


@dataclass(slots=True)
class _Failure:
    status: int
    code: int


class TwilioApiError(Exception):
    def __init__(self, status: int, code: int, **fields: str) -> None:
        super().__init__(code)
        self.status, self.code, self.fields = status, code, fields

    def response(self) -> JSONResponse:
        message = ERROR_MESSAGES.get(self.code, "Error").format(**self.fields)
        body: dict[str, Any] = {
            "code": self.code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        if self.code == 20003:
            body["detail"] = "Your AccountSid or AuthToken was incorrect."
        return JSONResponse(body, status_code=self.status)


class FakeTwilio(ServedFake):
    """Twilio's Messages REST API for one account; records what it receives.

    `messages` holds every created Message (the JSON returned, plus `status_callback`);
    `call_updates` holds every accepted live-call update (`call_sid` plus the form keys
    that were sent: `Twiml`, `Url`, `Method`, `Status`, ...); `requests` holds every
    request, accepted or not. `reject_to()` and `fail_next()` make sends fail the way
    Twilio does; `end_call()` makes a call's updates fail as for a finished call.
    """

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        phone_numbers: Iterable[str] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.phone_numbers = set(phone_numbers) if phone_numbers is not None else None
        self.messages: list[dict[str, Any]] = []
        self.call_updates: list[dict[str, str]] = []
        self._ended_calls: set[str] = set()
        self.requests: list[RecordedRequest] = []
        self._rejections: dict[str, int] = {}
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()
        prefix = f"/{API_VERSION}/Accounts/{{account_sid}}"
        self.app = Starlette(
            routes=[
                Route(f"{prefix}/Messages.json", self._create_message, methods=["POST"]),
                Route(f"{prefix}/Messages/{{sid}}.json", self._fetch_message, methods=["GET"]),
                Route(f"{prefix}/Calls/{{call_sid}}.json", self._update_call, methods=["POST"]),
            ]
        )

    def reject_to(self, to_phone: str, *, code: int = 21610) -> None:
        """Every send to `to_phone` fails with a 400 and this Twilio error code."""
        with self._lock:
            self._rejections[to_phone] = code

    def fail_next(self, count: int = 1, *, status: int = 500) -> None:
        """The next `count` sends fail with this HTTP status (500, 503 or 429)."""
        with self._lock:
            for _ in range(count):
                self._failures.append(_Failure(status, SERVER_ERROR_CODES.get(status, 20500)))

    def reset(self) -> None:
        """Forget recorded traffic and configured failures."""
        with self._lock:
            self.messages.clear()
            self.call_updates.clear()
            self._ended_calls.clear()
            self.requests.clear()
            self._rejections.clear()
            self._failures.clear()

    def end_call(self, call_sid: str) -> None:
        """The caller hung up: later updates of this call fail with 21220."""
        with self._lock:
            self._ended_calls.add(call_sid)

    def message(self, sid: str) -> dict[str, Any]:
        """A created message by sid."""
        with self._lock:
            return next(m for m in self.messages if m["sid"] == sid)

    async def _create_message(self, request: Request) -> JSONResponse:
        form = await request.form()
        fields = {key: [str(v) for v in form.getlist(key)] for key in form}
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            form=fields,
        )
        try:
            self._authenticate(request)
            response = self._create({k: v[-1] for k, v in fields.items()}, fields)
        except TwilioApiError as error:
            response = error.response()
        record.status = response.status_code
        with self._lock:
            self.requests.append(record)
        return response

    async def _fetch_message(self, request: Request) -> JSONResponse:
        record = RecordedRequest(request.method, request.url.path, dict(request.headers))
        try:
            self._authenticate(request)
            sid = request.path_params["sid"]
            with self._lock:
                found = next((m for m in self.messages if m["sid"] == sid), None)
            if found is None:
                raise TwilioApiError(404, 20404, path=request.url.path)
            response = JSONResponse({k: v for k, v in found.items() if k != "status_callback"})
        except TwilioApiError as error:
            response = error.response()
        record.status = response.status_code
        with self._lock:
            self.requests.append(record)
        return response

    async def _update_call(self, request: Request) -> JSONResponse:
        form = await request.form()
        fields = {key: [str(v) for v in form.getlist(key)] for key in form}
        record = RecordedRequest(request.method, request.url.path, dict(request.headers), form=fields)
        try:
            self._authenticate(request)
            response = self._update({k: v[-1] for k, v in fields.items()}, request.path_params["call_sid"])
        except TwilioApiError as error:
            response = error.response()
        record.status = response.status_code
        with self._lock:
            self.requests.append(record)
        return response

    def _update(self, form: dict[str, str], call_sid: str) -> JSONResponse:
        status = form.get("Status")
        if status is not None and status not in CALL_UPDATE_STATUSES:
            raise TwilioApiError(400, 21218, update_status=status)
        if status is None and not form.get("Twiml") and not form.get("Url"):
            raise TwilioApiError(400, 21205)
        with self._lock:
            if call_sid in self._ended_calls:
                raise TwilioApiError(400, 21220)
            self.call_updates.append({"call_sid": call_sid, **form})
            if status is not None:
                self._ended_calls.add(call_sid)
        now = _rfc2822(datetime.now(UTC))
        call: dict[str, Any] = {
            "account_sid": self.account_sid,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": "inbound",
            "duration": None,
            "end_time": now if status is not None else None,
            "forwarded_from": None,
            "from": None,
            "from_formatted": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "sid": call_sid,
            "start_time": now,
            "status": status or "in-progress",
            "to": None,
            "to_formatted": None,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{call_sid}.json",
        }
        return JSONResponse(call)

    def _authenticate(self, request: Request) -> None:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            user = password = ""
        if scheme.lower() != "basic" or (user, password) != (self.account_sid, self.auth_token):
            raise TwilioApiError(401, 20003)
        if request.path_params["account_sid"] != self.account_sid:
            raise TwilioApiError(404, 20404, path=request.url.path)

    def _create(self, form: dict[str, str], multi: dict[str, list[str]]) -> JSONResponse:
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        service_sid = form.get("MessagingServiceSid")
        media = multi.get("MediaUrl", [])
        if not to:
            raise TwilioApiError(400, 21604)
        if not from_ and not service_sid:
            raise TwilioApiError(400, 21603)
        if not body and not media and not form.get("ContentSid"):
            raise TwilioApiError(400, 21602)
        if len(body) > MAX_BODY_CHARS:
            raise TwilioApiError(400, 21617)
        if not E164.match(to) and ":" not in to:  # channel addresses look like whatsapp:+1...
            raise TwilioApiError(400, 21211, to=to)
        if from_ and self.phone_numbers is not None and from_ not in self.phone_numbers:
            raise TwilioApiError(400, 21606, from_=from_)
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
            rejection = self._rejections.get(to)
        if failure is not None:
            raise TwilioApiError(failure.status, failure.code)
        if rejection is not None:
            raise TwilioApiError(400, rejection, to=to, from_=from_)

        sid = "SM" + secrets.token_hex(16)
        now = _rfc2822(datetime.now(UTC))
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        message: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_ or None,
            "messaging_service_sid": service_sid,
            "num_media": str(len(media)),
            "num_segments": "0" if service_sid else str(count_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service_sid else "queued",
            "subresource_uris": {"media": f"{base}/Media.json"},
            "to": to,
            "uri": f"{base}.json",
        }
        with self._lock:
            self.messages.append({**message, "status_callback": form.get("StatusCallback")})
        return JSONResponse(message, status_code=201)
