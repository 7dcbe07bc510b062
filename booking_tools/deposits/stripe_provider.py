"""Deposits through Stripe Checkout, with the real `stripe` SDK (async methods).

One hosted Checkout Session per deposit; the session id is the deposit's `provider_ref`.
Payment is confirmed by webhook (`booking_tools.deposits.stripe_router`), never by the
customer's redirect. `STRIPE_API_BASE` points the SDK at another host (the local fake).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import stripe

from booking_tools.deposits.providers import Checkout
from hibachi.context import utcnow
from hibachi.errors import DomainError
from hibachi.settings import Settings

CURRENCY = "usd"
TIMEOUT_SECONDS = 30
MAX_NETWORK_RETRIES = 2  # POSTs carry idempotency keys, so retries never double-charge
# Stripe accepts a session `expires_at` 30 min to 24 h after creation; the minute of
# margin on each side absorbs clock skew between us and Stripe.
MIN_CHECKOUT_TTL = timedelta(minutes=31)
MAX_CHECKOUT_TTL = timedelta(hours=24) - timedelta(minutes=1)


class PaymentProviderError(DomainError):
    """Stripe refused the request or could not be reached."""

    status_code = 502


def checkout_expiry(expires_at: datetime, *, now: datetime) -> datetime:
    """`expires_at` moved into the window Stripe accepts for a Checkout Session."""
    return min(max(expires_at, now + MIN_CHECKOUT_TTL), now + MAX_CHECKOUT_TTL)


@contextmanager
def stripe_errors(action: str) -> Iterator[None]:
    """Turn SDK errors into a `PaymentProviderError` the API renders as a 502."""
    try:
        yield
    except stripe.StripeError as exc:
        raise PaymentProviderError(
            f"Stripe could not {action}: {exc.user_message or type(exc).__name__}"
        ) from exc


class StripePayments:
    """`PaymentProvider` on Stripe Checkout: hosted payment page, refunds by PaymentIntent."""

    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        if not settings.stripe_api_key:
            raise ValueError("StripePayments needs STRIPE_API_KEY")
        self.public_base_url = settings.public_base_url.rstrip("/")
        api_base = settings.stripe_api_base
        self.client = stripe.StripeClient(
            settings.stripe_api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=MAX_NETWORK_RETRIES,
            http_client=stripe.HTTPXClient(timeout=TIMEOUT_SECONDS),
        )

    @property
    def success_url(self) -> str:
        """Where Checkout sends the customer after paying; Stripe fills in the session id."""
        return f"{self.public_base_url}/stripe/return?session_id={{CHECKOUT_SESSION_ID}}"

    @property
    def cancel_url(self) -> str:
        """Where the customer lands on backing out (Stripe substitutes nothing here)."""
        return f"{self.public_base_url}/stripe/return"

    async def create_checkout(
        self, *, token: str, amount_cents: int, description: str, expires_at: datetime
    ) -> Checkout:
        """A Checkout Session for one line item of `amount_cents` USD."""
        expiry = checkout_expiry(expires_at, now=utcnow())
        with stripe_errors("start the deposit payment"):
            session = await self.client.v1.checkout.sessions.create_async(
                {
                    "mode": "payment",
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": CURRENCY,
                                "unit_amount": amount_cents,
                                "product_data": {"name": description},
                            },
                        }
                    ],
                    "client_reference_id": token,
                    "metadata": {"deposit_token": token},
                    "payment_intent_data": {"metadata": {"deposit_token": token}},
                    "expires_at": int(expiry.timestamp()),
                    "success_url": self.success_url,
                    "cancel_url": self.cancel_url,
                },
                {"idempotency_key": f"deposit-checkout-{token}"},
            )
        if session.url is None:
            raise PaymentProviderError(f"Stripe returned checkout {session.id} without a payment URL")
        return Checkout(url=session.url, provider_ref=session.id)

    async def refund(self, *, provider_ref: str | None, amount_cents: int) -> None:
        """Refund the session's PaymentIntent; a charge Stripe already refunded counts as done."""
        if provider_ref is None:
            raise PaymentProviderError("this deposit has no Stripe checkout to refund")
        with stripe_errors("look up the deposit payment"):
            session = await self.client.v1.checkout.sessions.retrieve_async(provider_ref)
        intent = session.payment_intent
        if intent is None:
            raise PaymentProviderError(f"Stripe checkout {provider_ref} has no payment to refund")
        intent_id = intent if isinstance(intent, str) else intent.id
        with stripe_errors("refund the deposit"):
            try:
                await self.client.v1.refunds.create_async(
                    {
                        "payment_intent": intent_id,
                        "amount": amount_cents,
                        "metadata": {"checkout": provider_ref},
                    },
                    {"idempotency_key": f"deposit-refund-{provider_ref}"},
                )
            except stripe.InvalidRequestError as exc:
                if exc.code != "charge_already_refunded":
                    raise
