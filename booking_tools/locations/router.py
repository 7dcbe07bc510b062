from __future__ import annotations

from fastapi import APIRouter

from booking_tools.locations import service
from booking_tools.locations.models import Location
from booking_tools.locations.schemas import LocationList, LocationOut
from hibachi.deps import AnyRole, SessionDep

router = APIRouter(prefix="/v1/locations", tags=["locations"])


def to_out(location: Location) -> LocationOut:
    return LocationOut.model_validate(
        {
            **{c: getattr(location, c) for c in LocationOut.model_fields if c != "staff_hours"},
            "staff_hours": service.staff_hours(location),
        }
    )


@router.get("", response_model=LocationList)
async def list_locations(session: SessionDep, _: AnyRole) -> LocationList:
    items = [to_out(loc) for loc in await service.list_locations(session)]
    return LocationList(items=items, total=len(items))


@router.get("/{slug}", response_model=LocationOut)
async def get_location(slug: str, session: SessionDep, _: AnyRole) -> LocationOut:
    return to_out(await service.get_location(session, slug=slug))
