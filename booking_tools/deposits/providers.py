"""Payment providers behind one interface.

`BuiltinPayments` is the embedded default: a payment page served by this app at
`/pay/{token}`. `StripePayments` (when `STRIPE_API_KEY` is set) creates Stripe Checkout
Sessions with the real `stripe` SDK. Both drive the same deposit state changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Checkout:
    url: str
    provider_ref: str | None


class PaymentProvider(Protocol):
    name: str

    async def create_checkout(
        self, *, token: str, amount_cents: int, description: str, expires_at: datetime
    ) -> Checkout:
        """Start a payment for `amount_cents`; return where the customer pays."""
        ...

    async def refund(self, *, provider_ref: str | None, amount_cents: int) -> None:
        """Return a paid deposit to the customer."""
        ...


class BuiltinPayments:
    """Payments on our own page; paying there marks the deposit paid."""

    name = "builtin"

    def __init__(self, public_base_url: str) -> None:
        self.base = public_base_url.rstrip("/")

    async def create_checkout(
        self, *, token: str, amount_cents: int, description: str, expires_at: datetime
    ) -> Checkout:
        return Checkout(url=f"{self.base}/pay/{token}", provider_ref=None)

    async def refund(self, *, provider_ref: str | None, amount_cents: int) -> None:
        """Nothing leaves the building: the refund is the recorded state change."""
