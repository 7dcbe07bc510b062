"""A local RingCentral platform: OAuth, SMS, Call Control and recordings, on the wire.

Speaks what the `ringcentral` SDK sends and reads (protocols.md sections 4.1 and 4.5):
`POST /restapi/oauth/token` with Basic client auth (JWT-bearer and refresh_token
grants), then JSON API calls with `Authorization: bearer <token>`. SMS sends answer
with a message-store record whose `id` is a JSON number and `messageStatus` "Queued".
Error bodies follow RingCentral's shapes (`{"errorCode", "message", "errors": [...]}`
for the API, `{"error", "error_description", "errors"}` for OAuth); the individual
`CMN-`/`OAU-` codes are approximations, not verified against the live platform.
"""

from __future__ import annotations

import base64
import inspect
import itertools
import json
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from telephony.fakes.server import RecordedRequest, ServedFake

DEFAULT_CLIENT_ID = "fake-rc-client-id"
DEFAULT_CLIENT_SECRET = "fake-rc-client-secret"
DEFAULT_PHONE_NUMBERS = ("+16505550100",)
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_TEXT_UTF16 = 1000
EXTENSION = "/restapi/v1.0/account/{account}/extension/{extension}"
ACCOUNT = "/restapi/v1.0/account/{account}"
PARTY = ACCOUNT + "/telephony/sessions/{session}/parties/{party}"
SUBSCRIPTION = "/restapi/v1.0/subscription"
HANDSHAKE_TIMEOUT = 3.0  # seconds RingCentral gives the webhook to echo Validation-Token
HANDSHAKE_MAX_BYTES = 1024  # the whole handshake response, headers included
CALL_TARGETS = ("phoneNumber", "extensionNumber", "voicemail", "parkOrbit", "extensionId")


@dataclass(slots=True)
class FakeCall:
    """A telephony session the fake knows: Call Control works on its parties."""

    telephony_session_id: str
    party_id: str
    from_phone: str
    to_phone: str
    direction: str = "Inbound"
    recording_id: str | None = None


@dataclass(slots=True)
class FakeRecording:
    recording_id: str
    content: bytes
    content_type: str
    telephony_session_id: str | None
    duration: int


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _utf16_units(text: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def api_error(
    status: int, error_code: str, message: str, *, top: str | None = None, **extra: str
) -> JSONResponse:
    """RingCentral's REST error body."""
    detail = {"errorCode": error_code, "message": message, **extra}
    top = top or {
        400: "InvalidParameter",
        401: "TokenInvalid",
        403: "FeatureNotAvailable",
        404: "ResourceNotFound",
        429: "CMN-301",
        500: "InternalError",
        503: "ServiceUnavailable",
    }.get(status, error_code)
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return JSONResponse(
        {"errorCode": top, "message": message, "errors": [detail]},
        status_code=status,
        headers=headers,
    )


def _invalid(parameter: str) -> JSONResponse:
    message = f"Parameter [{parameter}] value is invalid"
    return api_error(400, "CMN-101", message, parameterName=parameter)


def oauth_error(status: int, error: str, error_code: str, description: str) -> JSONResponse:
    """RingCentral's OAuth error body."""
    return JSONResponse(
        {
            "error": error,
            "errors": [{"errorCode": error_code, "message": description}],
            "error_description": description,
        },
        status_code=status,
    )


@dataclass(slots=True)
class _Failure:
    status: int
    error_code: str
    message: str


SERVER_FAILURES = {
    429: ("CMN-301", "Request rate exceeded"),
    500: ("CMN-500", "Internal Server Error"),
    503: ("CMN-211", "Service temporarily unavailable"),
}


class FakeRingCentral(ServedFake):
    """One RingCentral account and user extension that owns `phone_numbers` (SmsSender).

    `token_requests` holds every token-endpoint form, `messages` every SMS accepted (the
    record returned), `requests` every request. `jwt=None` accepts any assertion.
    """

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        jwt: str | None = None,
        phone_numbers: Iterable[str] = DEFAULT_PHONE_NUMBERS,
        account_id: str = "811112222",
        extension_id: str = "811112222",
        access_token_ttl: int = 3600,
        refresh_token_ttl: int = 604800,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.jwt = jwt
        self.phone_numbers = list(phone_numbers)
        self.account_id = account_id
        self.extension_id = extension_id
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.token_requests: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self._access: dict[str, float] = {}
        self._refresh: dict[str, float] = {}
        self._failures: deque[_Failure] = deque()
        self._rejections: dict[str, _Failure] = {}
        self.call_control: list[dict[str, Any]] = []
        self.calls: dict[str, FakeCall] = {}
        self.recordings: dict[str, FakeRecording] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}  # id -> the subscription record
        self._ids = itertools.count(3012345678016)
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/restapi/oauth/token", self._token, methods=["POST"]),
                Route("/restapi/oauth/revoke", self._revoke, methods=["POST"]),
                Route(f"{EXTENSION}/sms", self._send_sms, methods=["POST"]),
                Route(f"{EXTENSION}/phone-number", self._phone_numbers, methods=["GET"]),
                Route(f"{EXTENSION}/message-store/{{id:int}}", self._get_message, methods=["GET"]),
                Route(PARTY + "/{action}", self._party_action, methods=["POST"]),
                Route(f"{ACCOUNT}/call-log", self._call_log, methods=["GET"]),
                Route(f"{ACCOUNT}/recording/{{id}}", self._recording, methods=["GET"]),
                Route(f"{ACCOUNT}/recording/{{id}}/content", self._recording_content, methods=["GET"]),
                Route(SUBSCRIPTION, self._create_subscription, methods=["POST"]),
                Route(SUBSCRIPTION, self._list_subscriptions, methods=["GET"]),
                Route(SUBSCRIPTION + "/{id}/renew", self._renew_subscription, methods=["POST"]),
            ]
        )

    # -- test controls -------------------------------------------------------------

    def fail_next(self, count: int = 1, *, status: int = 503) -> None:
        """The next `count` SMS sends fail with this HTTP status (429, 500 or 503)."""
        code, message = SERVER_FAILURES.get(status, SERVER_FAILURES[500])
        with self._lock:
            self._failures.extend(_Failure(status, code, message) for _ in range(count))

    def reject_to(
        self,
        to_phone: str,
        *,
        status: int = 400,
        error_code: str = "MSG-333",
        message: str = "The recipient has opted out of messages from this number",
    ) -> None:
        """Every SMS to `to_phone` fails with this status and error."""
        with self._lock:
            self._rejections[to_phone] = _Failure(status, error_code, message)

    def expire_access_tokens(self) -> None:
        """Server-side expiry: every issued access token now gets 401 TokenExpired."""
        with self._lock:
            self._access = {token: 0.0 for token in self._access}

    def start_call(
        self,
        telephony_session_id: str,
        *,
        from_phone: str,
        to_phone: str,
        direction: str = "Inbound",
        party_id: str | None = None,
    ) -> FakeCall:
        """Register a telephony session so Call Control can act on it."""
        call = FakeCall(
            telephony_session_id,
            party_id or f"p-{telephony_session_id.removeprefix('s-')}-2",
            from_phone,
            to_phone,
            direction,
        )
        with self._lock:
            self.calls[telephony_session_id] = call
        return call

    def add_recording(
        self,
        recording_id: str,
        content: bytes,
        *,
        content_type: str = "audio/wav",
        telephony_session_id: str | None = None,
        duration: int = 0,
    ) -> FakeRecording:
        """Store a recording (listed in the call log under its session, if given)."""
        recording = FakeRecording(recording_id, content, content_type, telephony_session_id, duration)
        with self._lock:
            self.recordings[recording_id] = recording
            call = self.calls.get(telephony_session_id or "")
            if call is not None:
                call.recording_id = recording_id
        return recording

    def session_event(
        self,
        call: FakeCall,
        *,
        sequence: int,
        status: str,
        event_time: datetime,
        reason: str | None = None,
        with_recording: bool = False,
    ) -> dict[str, Any]:
        """A telephony-session notification (protocols.md 4.6) as it reaches a webhook."""
        party_status: dict[str, Any] = {"code": status, "rcc": False}
        if reason:
            party_status["reason"] = reason
        party: dict[str, Any] = {
            "accountId": self.account_id,
            "extensionId": self.extension_id,
            "id": call.party_id,
            "direction": call.direction,
            "from": {"phoneNumber": call.from_phone},
            "to": {"phoneNumber": call.to_phone, "extensionId": self.extension_id},
            "status": party_status,
            "missedCall": status == "Disconnected" and reason == "NoAnswer",
            "standAlone": False,
            "muted": False,
        }
        if with_recording and call.recording_id:
            party["recordings"] = [{"id": call.recording_id, "active": status != "Disconnected"}]
        return {
            "uuid": str(next(self._ids)),
            "event": f"/restapi/v1.0/account/{self.account_id}/telephony/sessions",
            "timestamp": _iso(event_time),
            "subscriptionId": "0a4c1e2b-7f3d-4b89-9d1e-6b2c9a0f5e11",
            "ownerId": self.account_id,
            "body": {
                "sequence": sequence,
                "sessionId": str(61234567016 + sequence),
                "telephonySessionId": call.telephony_session_id,
                "serverId": "10.13.121.50.TAM",
                "eventTime": _iso(event_time),
                "origin": {"type": "Call"},
                "parties": [party],
            },
        }

    def reset(self) -> None:
        """Forget recorded traffic, issued tokens and configured failures."""
        with self._lock:
            self.call_control.clear()
            self.calls.clear()
            self.recordings.clear()
            self.token_requests.clear()
            self.messages.clear()
            self.requests.clear()
            self._access.clear()
            self._refresh.clear()
            self._failures.clear()
            self._rejections.clear()
            self.subscriptions.clear()

    # -- OAuth ---------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        with self._lock:
            self.token_requests.append(form)
        response = self._grant(request, form)
        self._record(request, response, form={k: [v] for k, v in form.items()})
        return response

    def _grant(self, request: Request, form: dict[str, str]) -> Response:
        if not self._client_ok(request):
            return oauth_error(401, "invalid_client", "OAU-123", "Invalid client credentials")
        grant = form.get("grant_type")
        if grant == JWT_GRANT:
            assertion = form.get("assertion", "")
            if not assertion or (self.jwt is not None and assertion != self.jwt):
                return oauth_error(400, "invalid_grant", "OAU-140", "Invalid JWT token")
        elif grant == "refresh_token":
            with self._lock:
                expiry = self._refresh.pop(form.get("refresh_token", ""), 0.0)
            if expiry < time.time():
                return oauth_error(400, "invalid_grant", "OAU-211", "Token is revoked")
        else:
            return oauth_error(400, "unsupported_grant_type", "OAU-250", "Unsupported grant type")
        return JSONResponse(self._issue_tokens())

    def _issue_tokens(self) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            self._access[access] = now + self.access_token_ttl
            self._refresh[refresh] = now + self.refresh_token_ttl
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.access_token_ttl,
            "refresh_token": refresh,
            "refresh_token_expires_in": self.refresh_token_ttl,
            "scope": "SMS ReadMessages ReadAccounts CallControl",
            "owner_id": self.extension_id,
            "endpoint_id": secrets.token_urlsafe(16),
        }

    async def _revoke(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        if self._client_ok(request):
            with self._lock:
                self._access.pop(form.get("token", ""), None)
                self._refresh.pop(form.get("token", ""), None)
            response = Response(status_code=200)
        else:
            response = oauth_error(401, "invalid_client", "OAU-123", "Invalid client credentials")
        self._record(request, response)
        return response

    def _client_ok(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            pair = base64.b64decode(encoded).decode()
        except ValueError:
            return False
        return scheme.lower() == "basic" and pair == f"{self.client_id}:{self.client_secret}"

    def _bearer_error(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return api_error(401, "AGW-401", "Authorization header is not specified")
        with self._lock:
            expiry = self._access.get(token)
        if expiry is None:
            return api_error(401, "OAU-213", "Token not found")
        if expiry < time.time():
            return api_error(401, "OAU-213", "Access token expired", top="TokenExpired")
        return None

    # -- REST API ------------------------------------------------------------------

    async def _json_call(
        self, request: Request, handle: Callable[[Any], Response | Awaitable[Response]]
    ) -> Response:
        """A bearer-authorised request with a JSON body (None if it is not JSON), recorded."""
        payload: Any = None
        response = self._bearer_error(request)
        if response is None:
            try:
                payload = await request.json()
            except json.JSONDecodeError:
                payload = None
            answer = handle(payload)
            response = await answer if inspect.isawaitable(answer) else answer
        self._record(request, response, body=payload)
        return response

    async def _send_sms(self, request: Request) -> Response:
        return await self._json_call(request, lambda payload: self._accept_sms(request, payload))

    def _accept_sms(self, request: Request, payload: Any) -> Response:
        body = payload if isinstance(payload, dict) else {}
        sender = body.get("from")
        from_phone = sender.get("phoneNumber") if isinstance(sender, dict) else None
        recipients = body.get("to")
        to_phones = [
            entry.get("phoneNumber")
            for entry in (recipients if isinstance(recipients, list) else [])
            if isinstance(entry, dict)
        ]
        text = body.get("text")
        if not isinstance(from_phone, str) or not from_phone:
            return _invalid("from")
        if not to_phones or not all(isinstance(p, str) and p for p in to_phones):
            return _invalid("to")
        if not isinstance(text, str) or not text:
            return _invalid("text")
        if _utf16_units(text) > MAX_TEXT_UTF16:
            message = f"Text length exceeds {MAX_TEXT_UTF16} characters"
            return api_error(400, "MSG-246", message, parameterName="text")
        if from_phone not in self.phone_numbers:
            return api_error(403, "MSG-242", "The requested feature is not available")
        phones = [str(p) for p in to_phones]
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
            if failure is None:
                failure = next((self._rejections[p] for p in phones if p in self._rejections), None)
        if failure is not None:
            return api_error(failure.status, failure.error_code, failure.message)
        record = self._message_record(str(request.base_url), from_phone, phones, text)
        with self._lock:
            self.messages.append(record)
        return JSONResponse(record)

    def _message_record(
        self, base_url: str, from_phone: str, to_phones: list[str], text: str
    ) -> dict[str, Any]:
        message_id = next(self._ids)
        conversation_id = 7711223344556677000 + message_id % 1000
        now = _iso(datetime.now(UTC))
        store = (
            f"{base_url.rstrip('/')}/restapi/v1.0/account/{self.account_id}"
            f"/extension/{self.extension_id}/message-store/{message_id}"
        )
        return {
            "uri": store,
            "id": message_id,
            "to": [{"phoneNumber": phone} for phone in to_phones],
            "from": {"phoneNumber": from_phone, "name": "Front Desk"},
            "type": "SMS",
            "creationTime": now,
            "readStatus": "Read",
            "priority": "Normal",
            "attachments": [
                {
                    "id": message_id,
                    "uri": f"{store}/content/{message_id}",
                    "type": "Text",
                    "contentType": "text/plain",
                }
            ],
            "direction": "Outbound",
            "availability": "Alive",
            "subject": text,
            "messageStatus": "Queued",
            "smsSendingAttemptsCount": 1,
            "conversationId": conversation_id,
            "conversation": {
                "id": str(conversation_id),
                "uri": f"{base_url.rstrip('/')}/restapi/v1.0/conversation/{conversation_id}",
            },
            "lastModifiedTime": now,
        }

    async def _phone_numbers(self, request: Request) -> Response:
        response = self._bearer_error(request)
        if response is None:
            base = str(request.base_url).rstrip("/")
            account_uri = f"{base}/restapi/v1.0/account/{self.account_id}"
            records = [
                {
                    "id": 1000 + index,
                    "uri": f"{account_uri}/phone-number/{1000 + index}",
                    "phoneNumber": number,
                    "paymentType": "Local",
                    "type": "VoiceFax",
                    "usageType": "DirectNumber",
                    "features": ["SmsSender", "MmsSender", "CallerId"],
                    "status": "Normal",
                    "country": {"id": "1", "isoCode": "US", "name": "United States"},
                }
                for index, number in enumerate(self.phone_numbers)
            ]
            count = len(records)
            response = JSONResponse(
                {
                    "uri": f"{base}{request.url.path}?page=1&perPage=100",
                    "records": records,
                    "paging": {
                        "page": 1,
                        "totalPages": 1,
                        "perPage": 100,
                        "totalElements": count,
                        "pageStart": 0,
                        "pageEnd": max(count - 1, 0),
                    },
                    "navigation": {},
                }
            )
        self._record(request, response)
        return response

    async def _get_message(self, request: Request) -> Response:
        response = self._bearer_error(request)
        if response is None:
            message_id = request.path_params["id"]
            with self._lock:
                found = next((m for m in self.messages if m["id"] == message_id), None)
            response = (
                JSONResponse(found)
                if found is not None
                else api_error(404, "CMN-102", "Resource for parameter [messageId] is not found")
            )
        self._record(request, response)
        return response

    async def _party_action(self, request: Request) -> Response:
        return await self._json_call(request, lambda payload: self._call_control(request, payload))

    def _call_control(self, request: Request, payload: Any) -> Response:
        params = request.path_params
        action = params["action"]
        if action not in ("forward", "transfer"):
            return api_error(404, "CMN-102", f"Call Control action [{action}] is not supported by the fake")
        with self._lock:
            call = self.calls.get(params["session"])
        if call is None or call.party_id != params["party"]:
            return api_error(404, "TAS-102", "Telephony session or party not found")
        body = payload if isinstance(payload, dict) else {}
        targets = [key for key in CALL_TARGETS if body.get(key)]
        if len(targets) != 1:
            return _invalid("phoneNumber")
        with self._lock:
            self.call_control.append(
                {"action": action, "session_id": call.telephony_session_id, "party_id": call.party_id, **body}
            )
        return JSONResponse(
            {
                "id": call.party_id,
                "direction": call.direction,
                "from": {"phoneNumber": call.from_phone},
                "to": {"phoneNumber": str(body.get("phoneNumber") or call.to_phone)},
                "status": {"code": "Gone", "reason": "BlindTransfer" if action == "transfer" else "Forward"},
                "missedCall": False,
                "standAlone": False,
                "muted": False,
            }
        )

    def _recording_record(self, base: str, recording: FakeRecording) -> dict[str, Any]:
        uri = f"{base}/restapi/v1.0/account/{self.account_id}/recording/{recording.recording_id}"
        return {
            "id": recording.recording_id,
            "uri": uri,
            "type": "Automatic",
            "contentType": recording.content_type,
            "contentUri": f"{uri}/content",
            "duration": recording.duration,
        }

    async def _call_log(self, request: Request) -> Response:
        response = self._bearer_error(request)
        if response is None:
            base = str(request.base_url).rstrip("/")
            session_id = request.query_params.get("telephonySessionId")
            with self._lock:
                calls = [c for c in self.calls.values() if session_id in (None, c.telephony_session_id)]
                recordings = dict(self.recordings)
            records = []
            for call in calls:
                record: dict[str, Any] = {
                    "id": f"log-{call.telephony_session_id}",
                    "telephonySessionId": call.telephony_session_id,
                    "direction": call.direction,
                    "type": "Voice",
                    "from": {"phoneNumber": call.from_phone},
                    "to": {"phoneNumber": call.to_phone},
                    "result": "Accepted",
                }
                recording = recordings.get(call.recording_id or "")
                if recording is not None:
                    record["recording"] = self._recording_record(base, recording)
                records.append(record)
            response = JSONResponse(
                {
                    "uri": f"{base}{request.url.path}",
                    "records": records,
                    "paging": {
                        "page": 1,
                        "perPage": 100,
                        "pageStart": 0,
                        "pageEnd": max(len(records) - 1, 0),
                    },
                    "navigation": {},
                }
            )
        self._record(request, response)
        return response

    def _find_recording(self, request: Request) -> FakeRecording | Response:
        with self._lock:
            recording = self.recordings.get(str(request.path_params["id"]))
        if recording is None:
            return api_error(404, "CMN-102", "Resource for parameter [recordingId] is not found")
        return recording

    async def _recording(self, request: Request) -> Response:
        response = self._bearer_error(request)
        if response is None:
            found = self._find_recording(request)
            response = (
                found
                if isinstance(found, Response)
                else JSONResponse(self._recording_record(str(request.base_url).rstrip("/"), found))
            )
        self._record(request, response)
        return response

    async def _recording_content(self, request: Request) -> Response:
        response = self._bearer_error(request)
        if response is None:
            found = self._find_recording(request)
            response = (
                found
                if isinstance(found, Response)
                else Response(found.content, media_type=found.content_type)
            )
        self._record(request, response)
        return response

    # -- webhook subscriptions -------------------------------------------------------

    def add_subscription(
        self, address: str, event_filters: list[str], *, expires_in: int, verification_token: str = ""
    ) -> dict[str, Any]:
        """An existing subscription (made earlier, no handshake now); returns its record."""
        record = self._subscription_record(address, event_filters, expires_in, verification_token)
        with self._lock:
            self.subscriptions[record["id"]] = record
        return record

    def _subscription_record(
        self, address: str, event_filters: list[str], expires_in: int, verification_token: str
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        subscription_id = str(uuid.uuid4())
        delivery: dict[str, Any] = {"transportType": "WebHook", "address": address, "encryption": False}
        if verification_token:
            delivery["verificationToken"] = verification_token
        return {
            "id": subscription_id,
            "uri": f"{SUBSCRIPTION}/{subscription_id}",
            "eventFilters": list(event_filters),
            "creationTime": _iso(now),
            "expirationTime": _iso(now + timedelta(seconds=expires_in)),
            "expiresIn": expires_in,
            "status": "Active",
            "deliveryMode": delivery,
        }

    async def _create_subscription(self, request: Request) -> Response:
        return await self._json_call(request, self._subscribe)

    async def _subscribe(self, payload: Any) -> Response:
        delivery = payload.get("deliveryMode") if isinstance(payload, dict) else None
        filters = payload.get("eventFilters") if isinstance(payload, dict) else None
        if not isinstance(delivery, dict) or not isinstance(filters, list) or not filters:
            return _invalid("eventFilters")
        address = delivery.get("address")
        if delivery.get("transportType") != "WebHook" or not isinstance(address, str):
            return _invalid("deliveryMode.address")
        # The handshake: RingCentral POSTs a Validation-Token the webhook must echo, fast.
        token = secrets.token_hex(16)
        try:
            async with httpx.AsyncClient(timeout=HANDSHAKE_TIMEOUT) as client:
                answer = await client.post(address, headers={"Validation-Token": token})
        except httpx.HTTPError:
            return api_error(400, "SUB-521", "WebHook server is unreachable")
        size = len(answer.content) + sum(len(k) + len(v) + 4 for k, v in answer.headers.items())
        if answer.status_code != 200 or answer.headers.get("validation-token") != token:
            return api_error(400, "SUB-525", "WebHook server response is invalid")
        if size > HANDSHAKE_MAX_BYTES:
            return api_error(400, "SUB-525", "WebHook server response is invalid")
        expires_in = int(payload.get("expiresIn") or 604799)
        record = self._subscription_record(
            address, [str(f) for f in filters], expires_in, str(delivery.get("verificationToken") or "")
        )
        with self._lock:
            self.subscriptions[record["id"]] = record
        return JSONResponse(record)

    async def _list_subscriptions(self, request: Request) -> Response:
        response = self._bearer_error(request)
        if response is None:
            with self._lock:
                records = list(self.subscriptions.values())
            response = JSONResponse({"uri": SUBSCRIPTION, "records": records})
        self._record(request, response)
        return response

    async def _renew_subscription(self, request: Request) -> Response:
        response = self._bearer_error(request)
        if response is None:
            with self._lock:
                record = self.subscriptions.get(request.path_params["id"])
                if record is not None:
                    expiry = datetime.now(UTC) + timedelta(seconds=int(record["expiresIn"]))
                    record["expirationTime"] = _iso(expiry)
                    record["status"] = "Active"
            response = (
                JSONResponse(record)
                if record is not None
                else api_error(404, "SUB-404", "Subscription not found")
            )
        self._record(request, response)
        return response

    def _record(
        self,
        request: Request,
        response: Response,
        *,
        form: dict[str, list[str]] | None = None,
        body: Any = None,
    ) -> None:
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            form=form or {},
            json=body,
            status=response.status_code,
        )
        with self._lock:
            self.requests.append(record)
