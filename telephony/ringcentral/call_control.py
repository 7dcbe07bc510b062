"""RingCentral Call Control, recordings and the webhook subscription, through the `ringcentral` SDK.

The SDK is synchronous (`requests`), so every call runs in a worker thread. It logs in
by JWT on first use, refreshes an expired token, and after a 401 logs in once more and
retries the request once (the same policy as the SMS sender).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ringcentral.http import ApiException, ApiResponse
from ringcentral.platform import Platform

from hibachi.settings import Settings
from telephony.ringcentral.platform import REQUEST_TIMEOUT, RingCentralSession, error_body, http_status

SESSIONS = "/restapi/v1.0/account/~/telephony/sessions"
CALL_LOG = "/restapi/v1.0/account/~/call-log"
RECORDING = "/restapi/v1.0/account/~/recording"
SUBSCRIPTIONS = "/restapi/v1.0/subscription"
WEBHOOK_LIFETIME_SECONDS = 604799  # 7 days, the limit older RingCentral accounts still apply


class CallControlError(Exception):
    """RingCentral refused or could not be reached; `http_status` is None when unreachable."""

    def __init__(self, message: str, *, http_status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code


@dataclass(slots=True, frozen=True)
class Recording:
    """A call recording's bytes as RingCentral served them."""

    recording_id: str
    content: bytes
    content_type: str


class RingCentralCalls:
    """Forward/transfer ringing calls, look calls up in the call log, download recordings."""

    def __init__(
        self,
        *,
        server_url: str,
        client_id: str,
        client_secret: str,
        jwt: str,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._session = RingCentralSession(
            server_url=server_url, client_id=client_id, client_secret=client_secret, jwt=jwt, timeout=timeout
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RingCentralCalls | None:
        """A client when RingCentral is configured (server URL, client id and JWT), else None."""
        if not (settings.ringcentral_enabled and settings.ringcentral_jwt):
            return None
        return cls(
            server_url=settings.ringcentral_server_url or "",
            client_id=settings.ringcentral_client_id or "",
            client_secret=settings.ringcentral_client_secret or "",
            jwt=settings.ringcentral_jwt,
        )

    async def forward(self, *, telephony_session_id: str, party_id: str, phone_number: str) -> dict[str, Any]:
        """Forward a ringing (unanswered) party to `phone_number`; returns the party record."""
        path = f"{SESSIONS}/{telephony_session_id}/parties/{party_id}/forward"
        return await asyncio.to_thread(self._json, "post", path, {"phoneNumber": phone_number})

    async def transfer(
        self, *, telephony_session_id: str, party_id: str, phone_number: str
    ) -> dict[str, Any]:
        """Blind-transfer an answered party to `phone_number`; returns the party record."""
        path = f"{SESSIONS}/{telephony_session_id}/parties/{party_id}/transfer"
        return await asyncio.to_thread(self._json, "post", path, {"phoneNumber": phone_number})

    async def recording_ids(self, *, telephony_session_id: str) -> list[str]:
        """Ids of the recordings the call log lists for one telephony session."""
        query = {"telephonySessionId": telephony_session_id, "view": "Detailed", "withRecording": "true"}
        page = await asyncio.to_thread(self._json, "get", CALL_LOG, query)
        raw_records = page.get("records")
        records: list[Any] = raw_records if isinstance(raw_records, list) else []
        return [
            str(record["recording"]["id"])
            for record in records
            if isinstance(record, dict)
            and isinstance(record.get("recording"), dict)
            and record["recording"].get("id")
        ]

    async def fetch_recording(self, recording_id: str) -> Recording:
        """The recording's audio (WAV or MP3, as RingCentral stored it)."""
        response = await asyncio.to_thread(
            self._call, lambda platform: platform.get(f"{RECORDING}/{recording_id}/content")
        )
        raw = response.response()
        content_type = str(raw.headers.get("Content-Type", "application/octet-stream"))
        return Recording(recording_id, bytes(response.body()), content_type.split(";")[0].strip())

    async def ensure_webhook(
        self, *, address: str, event_filters: list[str], verification_token: str, renew_within: timedelta
    ) -> str:
        """Keep one active WebHook subscription to `address` with these filters.

        Creates it when missing (RingCentral then checks `address` with its Validation-Token
        handshake), renews it when it expires within `renew_within`. Returns what it did:
        "created", "renewed" or "active".
        """
        page = await asyncio.to_thread(self._json, "get", SUBSCRIPTIONS, {})
        records = page.get("records") if isinstance(page.get("records"), list) else []
        wanted = set(event_filters)
        for record in records or []:
            delivery = record.get("deliveryMode") if isinstance(record, dict) else None
            if (
                not isinstance(delivery, dict)
                or delivery.get("address") != address
                or not wanted <= set(record.get("eventFilters") or [])
                or record.get("status") != "Active"
            ):
                continue
            expires = datetime.fromisoformat(str(record["expirationTime"]).replace("Z", "+00:00"))
            if expires - datetime.now(UTC) > renew_within:
                return "active"
            await asyncio.to_thread(self._json, "post", f"{SUBSCRIPTIONS}/{record['id']}/renew", {})
            return "renewed"
        body = {
            "eventFilters": event_filters,
            "deliveryMode": {
                "transportType": "WebHook",
                "address": address,
                "verificationToken": verification_token,
            },
            "expiresIn": WEBHOOK_LIFETIME_SECONDS,
        }
        await asyncio.to_thread(self._json, "post", SUBSCRIPTIONS, body)
        return "created"

    # -- transport --------------------------------------------------------------------

    def _json(self, method: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method == "get":
            response = self._call(lambda platform: platform.get(path, payload))
        else:
            response = self._call(lambda platform: platform.post(path, payload))
        body = response.json_dict()
        return body if isinstance(body, dict) else {}

    def _call(self, send: Callable[[Platform], ApiResponse]) -> ApiResponse:
        try:
            return self._session.call(send)
        except ApiException as exc:
            raise _error(exc) from exc


def _error(exc: ApiException) -> CallControlError:
    """Map an SDK error; never uses str(exc), which embeds the request's auth header."""
    status = http_status(exc)
    if status is None:
        cause = exc.__cause__ or exc.__context__
        return CallControlError(f"ringcentral unreachable: {type(cause).__name__}")
    code, message = error_body(exc.api_response().response().text)
    return CallControlError(f"ringcentral {status}: {message}", http_status=status, code=code)
