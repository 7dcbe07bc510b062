"""Reminder jobs: the cron sweep that texts confirmed bookings 24 h and 1 h ahead."""

from __future__ import annotations

from typing import Any

from booking_tools.reminders.service import dispatch_due_reminders
from hibachi.context import AppContext, utcnow
from hibachi.db import unit_of_work


async def send_due_reminders(ctx: dict[str, Any]) -> int:
    """Claim and queue every reminder due now; returns how many this run claimed."""
    app: AppContext = ctx["app"]
    async with unit_of_work(app.sessions, queue=app.queue) as session:
        reminders = await dispatch_due_reminders(session, now=utcnow())
    return len(reminders)
