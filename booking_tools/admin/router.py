from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Query

from booking_tools.admin import service
from booking_tools.admin.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    AuditList,
    AuditOut,
)
from hibachi.db import after_commit
from hibachi.deps import AdminRole, CtxDep, NowDep, SessionDep

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201)
async def create_api_key(data: ApiKeyCreate, session: SessionDep, who: AdminRole) -> ApiKeyCreated:
    key, raw = await service.create_api_key(session, name=data.name, role=data.role)
    await service.audit(
        session,
        actor=who.actor,
        action="api_key.create",
        entity="api_key",
        entity_id=key.id,
        after={"name": key.name, "role": key.role.value},
    )
    return ApiKeyCreated.model_validate({**ApiKeyOut.model_validate(key).model_dump(), "key": raw})


@router.get("/api-keys", response_model=ApiKeyList)
async def list_api_keys(session: SessionDep, _: AdminRole) -> ApiKeyList:
    return ApiKeyList(items=[ApiKeyOut.model_validate(k) for k in await service.list_api_keys(session)])


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut)
async def revoke_api_key(
    key_id: uuid.UUID, session: SessionDep, ctx: CtxDep, who: AdminRole, now: NowDep
) -> ApiKeyOut:
    key = await service.revoke_api_key(session, key_id=key_id, now=now)
    after_commit(session, _clear(ctx))
    await service.audit(
        session,
        actor=who.actor,
        action="api_key.revoke",
        entity="api_key",
        entity_id=key.id,
        after={"revoked_at": key.revoked_at.isoformat() if key.revoked_at else None},
    )
    return ApiKeyOut.model_validate(key)


def _clear(ctx: CtxDep) -> Callable[[], Awaitable[None]]:
    async def clear() -> None:
        ctx.principals.clear()

    return clear


@router.get("/audit", response_model=AuditList)
async def audit_log(
    session: SessionDep,
    _: AdminRole,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditList:
    rows = await service.list_audit(session, entity_id=entity_id, limit=limit, offset=offset)
    return AuditList(items=[AuditOut.model_validate(r) for r in rows], limit=limit, offset=offset)
