from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.locations.models import Location
from hibachi.errors import NotFound


class LocationNotFound(NotFound):
    pass


async def list_locations(session: AsyncSession) -> list[Location]:
    return list(await session.scalars(select(Location).order_by(Location.slug)))


async def get_location(session: AsyncSession, *, slug: str) -> Location:
    location = await session.scalar(select(Location).where(Location.slug == slug))
    if location is None:
        raise LocationNotFound(f"no location '{slug}' (try 'bay-area' or 'sacramento')")
    return location


async def location_for_agent_phone(session: AsyncSession, *, phone: str) -> Location | None:
    return await session.scalar(select(Location).where(Location.agent_phone == phone))


def staff_available(location: Location, *, now: datetime) -> bool:
    """Whether staff answer the phone at `now` (local hours, every day)."""
    local = now.astimezone(ZoneInfo(location.timezone)).time()
    return location.staff_open <= local < location.staff_close


def staff_hours(location: Location) -> str:
    return f"{location.staff_open:%H:%M}-{location.staff_close:%H:%M}"
