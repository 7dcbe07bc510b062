"""Live call control through the real `twilio` SDK: transfer to a person, hang up.

Both work by updating the Call resource (protocols.md 1.6). Twilio then abandons the
call's current TwiML, so our Media Streams socket gets `stop` and closes: expected, not
an error. Failures raise `CallControlError` (or a subclass) with Twilio's error code.

The SDK's synchronous client runs in a worker thread, as for SMS (its aiohttp client
goes through deprecated aiohttp auth APIs); the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

import requests
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient
from twilio.twiml.voice_response import VoiceResponse

from hibachi.settings import Settings

CALL_CONTROL_TIMEOUT = 10.0  # seconds for one REST request
DIAL_TIMEOUT = 20  # seconds the transfer target rings before the dial gives up
TWILIO_CALL_NOT_IN_PROGRESS = 21220
TWILIO_NOT_FOUND = 20404


class CallControlError(Exception):
    """Twilio did not apply the update; `code` is Twilio's error code when it gave one."""

    retryable = False

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class CallEnded(CallControlError):
    """The call is already over (or unknown to Twilio): nothing left to transfer or hang up."""


class CallControlUnavailable(CallControlError):
    """Twilio was unreachable, throttled or failing; the same update may work if retried."""

    retryable = True


def dial_twiml(*, to_phone: str, caller_id: str, timeout: int = DIAL_TIMEOUT) -> str:
    """TwiML that bridges the caller to `to_phone`, showing `caller_id`."""
    response = VoiceResponse()
    dial = response.dial(caller_id=caller_id, answer_on_bridge=True, timeout=timeout)
    dial.number(to_phone)
    return str(response)


def _error(http_status: int, code: int | None, message: str) -> CallControlError:
    text = f"twilio {code or http_status}: {message}"
    if code in (TWILIO_CALL_NOT_IN_PROGRESS, TWILIO_NOT_FOUND) or http_status == 404:
        return CallEnded(text, code=code, http_status=http_status)
    if http_status >= 500 or http_status in (408, 429):
        return CallControlUnavailable(text, code=code, http_status=http_status)
    return CallControlError(text, code=code, http_status=http_status)


class TwilioCallControl:
    """A Twilio REST client for live-call updates; build once per app (or per use) and `aclose()`."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_base: str | None = None,
        timeout: float = CALL_CONTROL_TIMEOUT,
    ) -> None:
        self._http = TwilioHttpClient(timeout=timeout)
        self._client = TwilioClient(account_sid, auth_token, http_client=self._http)
        if api_base:  # a local protocol server (tests, benchmarks, evals)
            self._client.api.base_url = api_base.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            api_base=settings.twilio_api_base,
        )

    async def transfer(self, *, call_sid: str, to_phone: str, caller_id: str) -> None:
        """Redirect the live call to `<Dial>` `to_phone` (the caller hears ringing, then the person)."""
        await self._update(call_sid, twiml=dial_twiml(to_phone=to_phone, caller_id=caller_id))

    async def hang_up(self, *, call_sid: str) -> None:
        """End the live call (`Status=completed`)."""
        await self._update(call_sid, status="completed")

    async def _update(self, call_sid: str, **changes: str) -> None:
        await asyncio.to_thread(self._update_sync, call_sid, changes)

    def _update_sync(self, call_sid: str, changes: dict[str, str]) -> None:
        try:
            self._client.calls(call_sid).update(**changes)
        except TwilioRestException as exc:
            raise _error(exc.status, exc.code, exc.msg) from exc
        except TwilioServiceException as exc:
            raise _error(exc.status, exc.code, exc.detail or exc.title) from exc
        except requests.RequestException as exc:
            raise CallControlUnavailable(f"twilio unreachable: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        if self._http.session is not None:
            self._http.session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def transfer_call(settings: Settings, *, call_sid: str, to_phone: str, caller_id: str) -> None:
    """Transfer the live call `call_sid` to `to_phone` (one-off client; see `TwilioCallControl`)."""
    async with TwilioCallControl.from_settings(settings) as control:
        await control.transfer(call_sid=call_sid, to_phone=to_phone, caller_id=caller_id)


async def hang_up(settings: Settings, *, call_sid: str) -> None:
    """Hang up the live call `call_sid` (one-off client; see `TwilioCallControl`)."""
    async with TwilioCallControl.from_settings(settings) as control:
        await control.hang_up(call_sid=call_sid)
