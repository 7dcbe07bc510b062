from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class CustomerCreate(BaseModel):
    phone: str = Field(min_length=3, max_length=40, examples=["(408) 555-0123"])
    name: str | None = Field(default=None, max_length=120)
    email: str | None = Field(default=None, max_length=200)
    language: str = Field(default="en", max_length=10)
    sms_marketing: bool = False


class CustomerUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=120)
    email: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=10)
    sms_transactional: bool | None = None
    sms_marketing: bool | None = None


class CustomerMerge(BaseModel):
    duplicate_phone: str = Field(min_length=3, max_length=40)


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    phone: str
    name: str | None
    email: str | None
    language: str
    sms_transactional: bool
    sms_marketing: bool
    opted_out: bool
    opted_out_at: datetime | None
    created_at: datetime


class CustomerList(BaseModel):
    items: list[CustomerOut]
    total: int
    limit: int
    offset: int
