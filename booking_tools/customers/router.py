from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from booking_tools.admin.service import audit
from booking_tools.customers import service
from booking_tools.customers.schemas import (
    CustomerCreate,
    CustomerList,
    CustomerMerge,
    CustomerOut,
    CustomerUpdate,
)
from hibachi.deps import AnyRole, NowDep, SessionDep, StaffRole

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get("", response_model=CustomerList)
async def list_customers(
    session: SessionDep,
    _: AnyRole,
    q: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CustomerList:
    rows, total = await service.list_customers(session, query=q, limit=limit, offset=offset)
    return CustomerList(
        items=[CustomerOut.model_validate(c) for c in rows], total=total, limit=limit, offset=offset
    )


@router.post("", response_model=CustomerOut, status_code=201)
async def create_customer(data: CustomerCreate, session: SessionDep, who: StaffRole) -> CustomerOut:
    customer = await service.create_customer(session, data=data)
    await audit(
        session,
        actor=who.actor,
        action="customer.create",
        entity="customer",
        entity_id=customer.id,
        after=service.snapshot(customer),
    )
    return CustomerOut.model_validate(customer)


@router.get("/{phone}", response_model=CustomerOut)
async def get_customer(phone: str, session: SessionDep, _: AnyRole) -> CustomerOut:
    return CustomerOut.model_validate(await service.get_customer(session, phone=phone))


@router.patch("/{phone}", response_model=CustomerOut)
async def update_customer(
    phone: str, data: CustomerUpdate, session: SessionDep, who: StaffRole
) -> CustomerOut:
    customer = await service.get_customer(session, phone=phone)
    before = service.snapshot(customer)
    await service.update_customer(session, customer=customer, data=data)
    await audit(
        session,
        actor=who.actor,
        action="customer.update",
        entity="customer",
        entity_id=customer.id,
        before=before,
        after=service.snapshot(customer),
    )
    return CustomerOut.model_validate(customer)


@router.post("/{phone}/opt-out", response_model=CustomerOut)
async def opt_out(phone: str, session: SessionDep, who: StaffRole, now: NowDep) -> CustomerOut:
    customer = await service.set_opt_out(session, phone=phone, opted_out=True, now=now)
    await audit(
        session,
        actor=who.actor,
        action="customer.opt_out",
        entity="customer",
        entity_id=customer.id,
        after=service.snapshot(customer),
    )
    return CustomerOut.model_validate(customer)


@router.post("/{phone}/opt-in", response_model=CustomerOut)
async def opt_in(phone: str, session: SessionDep, who: StaffRole, now: NowDep) -> CustomerOut:
    customer = await service.set_opt_out(session, phone=phone, opted_out=False, now=now)
    await audit(
        session,
        actor=who.actor,
        action="customer.opt_in",
        entity="customer",
        entity_id=customer.id,
        after=service.snapshot(customer),
    )
    return CustomerOut.model_validate(customer)


@router.post("/{phone}/merge", response_model=CustomerOut)
async def merge_customer(phone: str, data: CustomerMerge, session: SessionDep, who: StaffRole) -> CustomerOut:
    keep = await service.get_customer(session, phone=phone)
    duplicate = await service.get_customer(session, phone=data.duplicate_phone)
    await service.merge_customers(session, keep=keep, duplicate=duplicate)
    await audit(
        session,
        actor=who.actor,
        action="customer.merge",
        entity="customer",
        entity_id=keep.id,
        before={"duplicate": duplicate.phone},
        after=service.snapshot(keep),
    )
    return CustomerOut.model_validate(keep)
