from __future__ import annotations

import uuid
from datetime import time

from sqlalchemy import String, Time
from sqlalchemy.orm import Mapped, mapped_column

from hibachi.db import Base, TimestampMixin, new_id


class Location(TimestampMixin, Base):
    __tablename__ = "locations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="America/Los_Angeles")
    staff_phone: Mapped[str] = mapped_column(String(20))
    agent_phone: Mapped[str] = mapped_column(String(20), unique=True)
    sms_provider: Mapped[str] = mapped_column(String(20))  # "twilio" | "ringcentral"
    chefs: Mapped[int]
    staff_open: Mapped[time] = mapped_column(Time)
    staff_close: Mapped[time] = mapped_column(Time)
