"""FastAPI dependencies: the app context, the request's unit of work, the caller, the clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.admin.models import Role
from booking_tools.admin.service import authenticate
from hibachi.context import AppContext, Principal, utcnow
from hibachi.db import unit_of_work
from hibachi.errors import Forbidden, Unauthorized


async def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


async def get_session(ctx: CtxDep) -> AsyncIterator[AsyncSession]:
    """The request owns the transaction: commit before the response is sent."""
    async with unit_of_work(ctx.sessions, queue=ctx.queue) as session:
        yield session


# scope="function": commit (and its errors) happen before the response starts.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_now() -> datetime:
    return utcnow()


NowDep = Annotated[datetime, Depends(get_now)]


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency factory: the caller's API key must have one of `roles` (admin always may)."""
    allowed = {Role.admin, *roles}

    async def dependency(
        session: SessionDep,
        ctx: CtxDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        principal = ctx.principals.get(credentials.credentials)
        if principal is None:
            key = await authenticate(session, credentials.credentials)
            if key is None:
                raise Unauthorized("invalid or revoked API key")
            principal = Principal(key_id=str(key.id), name=key.name, role=key.role)
            ctx.principals.put(credentials.credentials, principal)
        if principal.role not in allowed:
            raise Forbidden(f"this needs one of the roles: {', '.join(sorted(allowed))}")
        return principal

    return dependency


AnyRole = Annotated[Principal, Depends(require(Role.staff, Role.analyst))]
StaffRole = Annotated[Principal, Depends(require(Role.staff))]
AdminRole = Annotated[Principal, Depends(require())]
