"""One logged-in RingCentral `Platform` (the `ringcentral` SDK), shared by SMS and Call Control.

The SDK is synchronous (`requests`): callers run `call` in a worker thread. It logs in
by JWT on first use, refreshes an expired access token, and after a 401 logs in once
more and retries the request once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import requests
from ringcentral.http import ApiException, ApiResponse
from ringcentral.http import Client as RingCentralHttpClient
from ringcentral.platform import Platform

REQUEST_TIMEOUT = 15.0  # seconds, per HTTP request


class _TimeoutHttpClient(RingCentralHttpClient):  # type: ignore[misc]  # SDK ships no types
    """The SDK's HTTP client with a pooled session and a socket timeout (stock: none)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        self._session = requests.Session()

    def load_response(self, request: requests.PreparedRequest) -> ApiResponse:
        return ApiResponse(request, self._session.send(request, timeout=self._timeout))


class RingCentralSession:
    """A `Platform` with JWT login, token refresh and one re-login on 401."""

    def __init__(
        self,
        *,
        server_url: str,
        client_id: str,
        client_secret: str,
        jwt: str,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        # Platform is what `ringcentral.SDK(...).platform()` builds; constructing it here
        # lets us hand it an HTTP client with a timeout.
        self.platform = Platform(
            _TimeoutHttpClient(timeout),
            client_id,
            client_secret,
            server_url.rstrip("/"),
            name="hibachi-agent",
        )
        self._jwt = jwt
        self._lock = threading.Lock()  # one login/refresh at a time across worker threads
        self._logged_in = False

    def call(self, send: Callable[[Platform], ApiResponse]) -> ApiResponse:
        """Run one request with a usable token; raises the SDK's `ApiException` on failure."""
        self._authenticate(force=False)
        try:
            return send(self.platform)
        except ApiException as exc:
            if http_status(exc) != 401:
                raise
            self._authenticate(force=True)
            return send(self.platform)

    def _authenticate(self, *, force: bool) -> None:
        """Make sure the platform holds a usable access token: refresh, else log in by JWT."""
        with self._lock:
            auth = self.platform.auth()
            if not force and auth.access_token_valid():
                return
            if not force and self._logged_in and auth.refresh_token_valid():
                try:
                    self.platform.refresh()
                    return
                except ApiException:
                    pass  # refresh token revoked or rejected: a fresh JWT login follows
            self.platform.login(jwt=self._jwt)
            self._logged_in = True


def http_status(exc: ApiException) -> int | None:
    """The HTTP status behind an SDK error (None when the server was unreachable)."""
    api_response = exc.api_response()
    response = api_response.response() if api_response is not None else None
    return int(response.status_code) if response is not None else None


def error_body(raw: str) -> tuple[str | None, str]:
    """(error code, message) from a REST or OAuth error body; never the request's auth header."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None, raw[:200]
    if not isinstance(body, dict):
        return None, raw[:200]
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = first.get("errorCode") or body.get("errorCode") or body.get("error")
    message = body.get("message") or body.get("error_description") or first.get("message") or raw[:200]
    return (str(code) if code else None), str(message)
