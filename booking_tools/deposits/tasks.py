"""Deposit jobs: release bookings whose payment link expired."""

from __future__ import annotations

from typing import Any

from booking_tools.bookings.service import release_expired_deposits
from hibachi.context import AppContext, utcnow
from hibachi.db import unit_of_work


async def expire_deposits(ctx: dict[str, Any]) -> int:
    """Cancel every booking whose deposit is unpaid 24 h after the link went out."""
    app: AppContext = ctx["app"]
    async with unit_of_work(app.sessions, queue=app.queue) as session:
        return await release_expired_deposits(session, payments=app.extras["payments"], now=utcnow())
