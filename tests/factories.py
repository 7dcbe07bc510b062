"""Builders for domain objects, through the public API where a user would go."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

TZ = ZoneInfo("America/Los_Angeles")


def local_now() -> datetime:
    return datetime.now(TZ)


def future_date(days: int = 10) -> date:
    return (local_now() + timedelta(days=days)).date()


def booking_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "location": "bay-area",
        "customer_phone": "+14085550123",
        "customer_name": "Alex Kim",
        "event_date": future_date().isoformat(),
        "start_time": "18:00",
        "adults": 12,
        "children": 2,
    }
    body.update(overrides)
    return body


async def create_booking(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/v1/bookings", json=booking_body(**overrides))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result
