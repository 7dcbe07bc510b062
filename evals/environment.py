"""The world a trial runs in: a freshly seeded database, empty Redis, provider fakes, a fixed clock.

`EvalEnvironment` wraps an `AppContext` (the CLI builds its own on an embedded
PostgreSQL/Redis under `<HIBACHI_DATA_DIR>/evals`; tests pass theirs) and the app
that serves webhooks. Before each trial `reset` empties every table but the
knowledge base, flushes Redis, seeds the reference business (with the demo
customers) at the trial's clock and applies the scenario's `setup` through the
booking services. `deliver_outbox` sends queued texts through the real SDKs to the
fakes, as the worker's `send_text` job would (cron jobs, which read the wall clock,
are not run).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from sqlalchemy import select, text, update
from starlette.types import ASGIApp

import hibachi.models  # noqa: F401  (every table in the metadata, for truncation)
from booking_tools.bookings.models import Booking
from booking_tools.bookings.schemas import BookingCreate
from booking_tools.bookings.service import create_booking_with_deposit
from booking_tools.customers.service import get_or_create_customer, set_opt_out
from booking_tools.deposits.service import mark_paid
from booking_tools.locations.service import get_location
from booking_tools.loyalty.service import adjust_points
from booking_tools.messaging.models import MessageStatus, OutboundMessage
from booking_tools.messaging.tasks import send_text
from booking_tools.seed import seed
from evals.scenario import Setup
from hibachi.context import AppContext
from hibachi.db import Base, unit_of_work
from knowledge.ingest import ensure_ingested
from telephony.fakes import FakeRingCentral, FakeTwilio
from telephony.fakes.stripe_server import FakeStripe

KEEP_TABLES = frozenset({"knowledge_chunks"})
FILLER_PHONE = "+1408555{:04d}"  # customers who fill slots in setup: 555-9000 and up


@dataclass(slots=True, frozen=True)
class SentText:
    """One text a provider fake accepted."""

    provider: str
    from_phone: str
    to_phone: str
    body: str


@dataclass(slots=True)
class ProviderFakes:
    """The provider servers this run's texts go to (started by the CLI or by test fixtures)."""

    twilio: FakeTwilio
    ringcentral: FakeRingCentral | None = None
    stripe: FakeStripe | None = None  # when deposits go through Stripe Checkout

    def reset(self) -> None:
        self.twilio.reset()
        if self.ringcentral is not None:
            self.ringcentral.reset()

    def texts(self) -> list[SentText]:
        sent = [
            SentText("twilio", str(m.get("from")), str(m.get("to")), str(m.get("body") or ""))
            for m in list(self.twilio.messages)
        ]
        if self.ringcentral is not None:
            for m in list(self.ringcentral.messages):
                for to in m.get("to") or []:
                    sent.append(
                        SentText(
                            "ringcentral",
                            str(m["from"]["phoneNumber"]),
                            str(to["phoneNumber"]),
                            str(m.get("subject") or ""),
                        )
                    )
        return sent


@dataclass
class EvalEnvironment:
    """An app context and app to run trials in; `reset` gives each trial the same fresh state."""

    ctx: AppContext
    app: ASGIApp
    fakes: ProviderFakes
    _tables: str = field(init=False, default="")

    def __post_init__(self) -> None:
        names = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name not in KEEP_TABLES]
        self._tables = ", ".join(names)

    async def prepare(self) -> None:
        """Once per run: the knowledge base (kept across trials) is ingested with the app's embedder."""
        await ensure_ingested(self.ctx)

    async def reset(self, *, clock: datetime, setup: Setup, caller_phone: str) -> None:
        """Fresh state for one trial: empty tables, empty Redis, the seed, the scenario's setup."""
        async with unit_of_work(self.ctx.sessions) as session:
            await session.execute(text(f"TRUNCATE {self._tables} RESTART IDENTITY CASCADE"))
            await seed(session, now=clock, demo=True)
        await self.ctx.redis.flushdb()
        await apply_setup(self.ctx, setup, clock=clock, caller_phone=caller_phone, stripe=self.fakes.stripe)
        # Setup's own texts (deposit links of existing bookings) are not the trial's traffic.
        await self.deliver_outbox()
        self.fakes.reset()

    async def deliver_outbox(self) -> int:
        """Send every queued text now (the `send_text` job, run inline); returns how many were tried."""
        async with self.ctx.sessions() as session:
            queued = list(
                await session.scalars(
                    select(OutboundMessage.id)
                    .where(OutboundMessage.status == MessageStatus.queued)
                    .order_by(OutboundMessage.created_at, OutboundMessage.id)
                )
            )
        for message_id in queued:
            await send_text({"app": self.ctx}, str(message_id))
        return len(queued)


async def apply_setup(
    ctx: AppContext, setup: Setup, *, clock: datetime, caller_phone: str, stripe: FakeStripe | None = None
) -> None:
    """Customers (points, opt-out), existing bookings and full slots, through the booking services.

    A confirmed booking's deposit is paid at the provider too (the Stripe fake completes
    its Checkout Session), so refunds on cancellation work as for a real payment.
    """
    payments = ctx.extras["payments"]
    async with unit_of_work(ctx.sessions) as session:
        for wanted in setup.customers:
            customer = await get_or_create_customer(session, phone=wanted.phone, name=wanted.name)
            if wanted.points:
                await adjust_points(
                    session,
                    customer=customer,
                    points=wanted.points,
                    actor="eval-setup",
                    reason="eval setup",
                    now=clock,
                )
            if wanted.opted_out:
                await set_opt_out(session, phone=wanted.phone, opted_out=True, now=clock)
    for wanted_booking in setup.bookings:
        made_at = clock - timedelta(days=wanted_booking.booked_days_before)
        async with unit_of_work(ctx.sessions, queue=ctx.queue) as session:
            new = await create_booking_with_deposit(
                session,
                booking_in=BookingCreate(
                    location=wanted_booking.location,
                    customer_phone=wanted_booking.phone or caller_phone,
                    customer_name=wanted_booking.name,
                    event_date=wanted_booking.date,
                    start_time=time.fromisoformat(wanted_booking.time),
                    adults=wanted_booking.adults,
                    children=wanted_booking.children,
                ),
                payments=payments,
                now=made_at,
            )
            if wanted_booking.code or wanted_booking.reschedules:
                code = wanted_booking.code or new.booking.code
                await session.execute(
                    update(Booking)
                    .where(Booking.id == new.booking.id)
                    .values(code=code, reschedule_count=wanted_booking.reschedules)
                )
                new.booking.code, new.booking.reschedule_count = code, wanted_booking.reschedules
            if wanted_booking.status == "confirmed" and new.deposit is not None:
                if new.deposit.provider == "stripe" and stripe is not None and new.deposit.provider_ref:
                    stripe.complete_session(new.deposit.provider_ref)
                await mark_paid(session, deposit=new.deposit, now=made_at + timedelta(hours=1))
    fillers = _filler_phones()
    for slot in setup.fill:
        async with ctx.sessions() as session:
            location = await get_location(session, slug=slot.location)
            chefs = location.chefs
        for _ in range(chefs):
            async with unit_of_work(ctx.sessions, queue=ctx.queue) as session:
                await create_booking_with_deposit(
                    session,
                    booking_in=BookingCreate(
                        location=slot.location,
                        customer_phone=next(fillers),
                        customer_name="Filler Guest",
                        event_date=slot.date,
                        start_time=time.fromisoformat(slot.time),
                        adults=12,
                    ),
                    payments=payments,
                    now=clock - timedelta(days=7),
                )


def _filler_phones() -> Iterator[str]:
    n = 9000
    while True:
        yield FILLER_PHONE.format(n)
        n += 1


def new_call_sid() -> str:
    return "CA" + uuid.uuid4().hex
