"""A local Stripe REST server: Checkout Sessions and Refunds of API v1, on the wire.

Speaks what the `stripe` SDK sends and reads: form-encoded POSTs with bracketed nested
keys (`line_items[0][price_data][unit_amount]=10000`), the secret key as
`Authorization: Bearer sk_...` (or HTTP Basic with the key as user name),
`Idempotency-Key` replays, Stripe JSON objects, and Stripe's error body
`{"error": {"type", "code", "message", "param"}}`. Routes:

- `POST /v1/checkout/sessions` (mode "payment", `price_data` line items only)
- `GET  /v1/checkout/sessions/{id}`
- `POST /v1/refunds` (by `payment_intent`)

The customer's side of Checkout is played by `complete_session()` / `expire_session()`,
which return a webhook event body and its `Stripe-Signature`, signed as Stripe signs them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from telephony.fakes.server import RecordedRequest, ServedFake

DEFAULT_API_KEY = "sk_test_hibachi_fake"
DEFAULT_WEBHOOK_SECRET = "whsec_hibachi_fake"
DEFAULT_API_VERSION = "2026-10-28.endive"  # what stripe-python 16.1 pins
CHECKOUT_HOST = "https://checkout.stripe.com"
MIN_EXPIRY_SECONDS = 30 * 60
MAX_EXPIRY_SECONDS = 24 * 60 * 60

_KEY_PART = re.compile(r"[^\[\]]+")


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracketed form keys as nested dicts; all-index dicts become lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        *parents, leaf = _KEY_PART.findall(key)
        node = root
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return {k: _listify(v) if isinstance(v, dict) else v for k, v in root.items()}


def _listify(node: dict[str, Any]) -> Any:
    items = {k: _listify(v) if isinstance(v, dict) else v for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header for `payload`: `t=<ts>,v1=<hmac-sha256 of "t.payload">`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def _object_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(36).replace('-', 'a').replace('_', 'b')}"


class StripeApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def _required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value in (None, ""):
        raise StripeApiError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
    return value


def _integer(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeApiError(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param
        ) from None


@dataclass(slots=True)
class _Payment:
    """What completing a session creates: a PaymentIntent with one charge."""

    session_id: str
    charge_id: str
    amount: int
    currency: str
    refunded: int = 0


class FakeStripe(ServedFake):
    """Stripe's Checkout Sessions and Refunds for one account; records what it receives.

    `sessions` maps id -> Checkout Session JSON, `refunds` lists Refund JSON, `requests`
    holds every request (accepted or not) with its raw form fields.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        api_version: str = DEFAULT_API_VERSION,
    ) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.api_version = api_version
        self.sessions: dict[str, dict[str, Any]] = {}
        self.refunds: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self._payments: dict[str, _Payment] = {}  # by PaymentIntent id
        self._idempotent: dict[str, tuple[str, dict[str, Any], int, bytes]] = {}
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create_session, methods=["POST"]),
                Route("/v1/checkout/sessions/{session_id}", self._retrieve_session, methods=["GET"]),
                Route("/v1/refunds", self._create_refund, methods=["POST"]),
            ]
        )

    # -- the customer's side and webhooks ----------------------------------------------

    def complete_session(self, session_id: str) -> tuple[bytes, str]:
        """The customer pays: the session completes; returns the signed `checkout.session.completed`."""
        with self._lock:
            session = self._open_session(session_id)
            intent_id = _object_id("pi_test")
            self._payments[intent_id] = _Payment(
                session_id, _object_id("ch_test"), session["amount_total"], session["currency"]
            )
            session.update(status="complete", payment_status="paid", payment_intent=intent_id, url=None)
            snapshot = json.loads(json.dumps(session))
        return self.event("checkout.session.completed", snapshot)

    def expire_session(self, session_id: str) -> tuple[bytes, str]:
        """The session times out unpaid; returns the signed `checkout.session.expired`."""
        with self._lock:
            session = self._open_session(session_id)
            session.update(status="expired", url=None)
            snapshot = json.loads(json.dumps(session))
        return self.event("checkout.session.expired", snapshot)

    def event(self, type_: str, data_object: dict[str, Any]) -> tuple[bytes, str]:
        """A webhook body for an event about `data_object`, and its `Stripe-Signature` header."""
        body = {
            "id": _object_id("evt_test"),
            "object": "event",
            "api_version": self.api_version,
            "created": int(time.time()),
            "data": {"object": data_object},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }
        payload = json.dumps(body, indent=2).encode()  # Stripe sends pretty-printed JSON
        return payload, sign(payload, self.webhook_secret)

    def reset(self) -> None:
        """Forget every object and recorded request."""
        with self._lock:
            self.sessions.clear()
            self.refunds.clear()
            self.requests.clear()
            self._payments.clear()
            self._idempotent.clear()

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def _open_session(self, session_id: str) -> dict[str, Any]:
        session = self.sessions.get(session_id)
        if session is None:
            raise KeyError(f"no checkout session {session_id}")
        if session["status"] != "open":
            raise ValueError(f"checkout session {session_id} is {session['status']}")
        return session

    # -- HTTP --------------------------------------------------------------------------

    async def _create_session(self, request: Request) -> JSONResponse:
        return await self._handle(request, self._new_session)

    async def _create_refund(self, request: Request) -> JSONResponse:
        return await self._handle(request, self._new_refund)

    async def _retrieve_session(self, request: Request) -> JSONResponse:
        session_id = request.path_params["session_id"]

        def found(_: dict[str, Any]) -> JSONResponse:
            session = self.sessions.get(session_id)
            if session is None:
                raise StripeApiError(
                    404,
                    f"No such checkout.session: '{session_id}'",
                    code="resource_missing",
                    param="session",
                )
            return JSONResponse(session)

        return await self._handle(request, found)

    async def _handle(
        self, request: Request, action: Callable[[dict[str, Any]], JSONResponse]
    ) -> JSONResponse:
        form = await request.form() if request.method == "POST" else request.query_params
        pairs = [(key, str(value)) for key, value in form.multi_items()]
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            form={key: [str(v) for v in form.getlist(key)] for key in form},
        )
        params = decode_form(pairs)
        idempotency_key = request.headers.get("idempotency-key") if request.method == "POST" else None
        try:
            self._authenticate(request)
            with self._lock:
                response = self._replay(idempotency_key, request.url.path, params)
                if response is None:
                    response = action(params)
                    if idempotency_key is not None:
                        stored = (request.url.path, params, response.status_code, bytes(response.body))
                        self._idempotent[idempotency_key] = stored
        except StripeApiError as error:
            response = JSONResponse(error.body(), status_code=error.status)
        response.headers["request-id"] = _object_id("req")
        record.status = response.status_code
        with self._lock:
            self.requests.append(record)
        return response

    def _replay(self, key: str | None, path: str, params: dict[str, Any]) -> JSONResponse | None:
        if key is None or key not in self._idempotent:
            return None
        first_path, first_params, status, body = self._idempotent[key]
        if (first_path, first_params) != (path, params):
            raise StripeApiError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they were "
                "first used with. Try using a key other than "
                f"'{key}' if you meant to execute a different request.",
                type_="idempotency_error",
            )
        replay = JSONResponse(json.loads(body), status_code=status)
        replay.headers["idempotent-replayed"] = "true"
        return replay

    def _authenticate(self, request: Request) -> None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                credential = base64.b64decode(credential).decode().partition(":")[0]
            except ValueError:
                credential = ""
        elif scheme.lower() != "bearer":
            credential = ""
        if not credential:
            raise StripeApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if not hmac.compare_digest(credential, self.api_key):
            raise StripeApiError(401, f"Invalid API Key provided: {credential[:8]}****{credential[-4:]}")

    def _new_session(self, params: dict[str, Any]) -> JSONResponse:
        mode = _required(params, "mode")
        if mode != "payment":
            raise StripeApiError(400, f"This fake only supports mode=payment, not {mode}.", param="mode")
        line_items = _required(params, "line_items")
        if not isinstance(line_items, list):
            raise StripeApiError(400, "Invalid array", param="line_items")
        currency, total = None, 0
        for index, item in enumerate(line_items):
            prefix = f"line_items[{index}]"
            price = item.get("price_data")
            if not isinstance(price, dict):
                raise StripeApiError(
                    400, "You must specify either `price` or `price_data`.", param=f"{prefix}[price_data]"
                )
            item_currency = str(_required(price, "currency")).lower()
            if currency not in (None, item_currency):
                raise StripeApiError(400, "All line items must use the same currency.", param=prefix)
            currency = item_currency
            if not isinstance(price.get("product_data"), dict) or not price["product_data"].get("name"):
                raise StripeApiError(
                    400,
                    "Missing required param: line_items[0][price_data][product_data][name].",
                    code="parameter_missing",
                    param=f"{prefix}[price_data][product_data][name]",
                )
            unit_amount = _integer(_required(price, "unit_amount"), f"{prefix}[price_data][unit_amount]")
            quantity = _integer(_required(item, "quantity"), f"{prefix}[quantity]")
            total += unit_amount * quantity
        now = int(time.time())
        expires_at = _integer(params.get("expires_at", now + MAX_EXPIRY_SECONDS), "expires_at")
        if expires_at < now + MIN_EXPIRY_SECONDS:
            raise StripeApiError(
                400,
                "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
                code="parameter_invalid_integer",
                param="expires_at",
            )
        if expires_at > now + MAX_EXPIRY_SECONDS:
            raise StripeApiError(
                400,
                "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
                code="parameter_invalid_integer",
                param="expires_at",
            )
        session_id = _object_id("cs_test")
        session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": currency,
            "customer": None,
            "customer_details": None,
            "expires_at": expires_at,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "mode": mode,
            "payment_intent": None,  # created when the customer pays
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params.get("success_url"),
            "ui_mode": "hosted",
            "url": f"{CHECKOUT_HOST}/c/pay/{session_id}",
        }
        self.sessions[session_id] = session
        return JSONResponse(session)

    def _new_refund(self, params: dict[str, Any]) -> JSONResponse:
        intent_id = params.get("payment_intent")
        if not intent_id:
            raise StripeApiError(
                400,
                "One of the following params should be provided for this request: payment_intent or charge.",
                code="parameter_missing",
            )
        payment = self._payments.get(intent_id)
        if payment is None:
            raise StripeApiError(
                404, f"No such payment_intent: '{intent_id}'", code="resource_missing", param="payment_intent"
            )
        remaining = payment.amount - payment.refunded
        amount = _integer(params.get("amount", remaining), "amount")
        if remaining == 0:
            raise StripeApiError(
                400, f"Charge {payment.charge_id} has already been refunded.", code="charge_already_refunded"
            )
        if amount <= 0 or amount > remaining:
            raise StripeApiError(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                code="amount_too_large",
                param="amount",
            )
        payment.refunded += amount
        refund = {
            "id": _object_id("re_test"),
            "object": "refund",
            "amount": amount,
            "charge": payment.charge_id,
            "created": int(time.time()),
            "currency": payment.currency,
            "metadata": params.get("metadata") or {},
            "payment_intent": intent_id,
            "reason": params.get("reason"),
            "status": "succeeded",
        }
        self.refunds.append(refund)
        return JSONResponse(refund)
