from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LocationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    slug: str
    name: str
    address: str
    timezone: str
    staff_phone: str
    agent_phone: str
    sms_provider: str
    chefs: int
    staff_hours: str


class LocationList(BaseModel):
    items: list[LocationOut]
    total: int
