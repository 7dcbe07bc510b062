"""Loyalty jobs: lapse points 12 months after they were credited."""

from __future__ import annotations

from typing import Any

from booking_tools.loyalty.service import expire_points
from hibachi.context import AppContext, utcnow
from hibachi.db import unit_of_work


async def expire_loyalty_points(ctx: dict[str, Any]) -> int:
    """Write `expire` lines for every lapsed point; returns how many points expired."""
    app: AppContext = ctx["app"]
    async with unit_of_work(app.sessions, queue=app.queue) as session:
        return await expire_points(session, now=utcnow())
