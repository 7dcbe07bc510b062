"""Async SQLAlchemy: declarative base, engine/session factory, and the unit of work.

The request (or one agent tool call) owns the transaction: `unit_of_work()` commits
on success and rolls back on error; services only `flush()`. Work that must happen
only after a successful commit (enqueueing jobs) is registered with `after_commit`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData, Table, event, func
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, make_transient_to_detached, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry

from hibachi.settings import Settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

AfterCommit = Callable[[], Awaitable[None]]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def table_of(model: type[Base]) -> Table:
    """A mapped class's Core table (for statements built once at import, without the ORM)."""
    table: Table = model.__table__  # type: ignore[assignment]
    return table


def create_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.async_database_url,
        pool_size=settings.hibachi_db_pool_size,
        max_overflow=settings.hibachi_db_pool_size,
    )
    event.listen(engine.sync_engine.pool, "checkout", _replace_closed_connection)
    return engine


def _replace_closed_connection(_dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """Never hand out a pooled connection the server has closed (restart, terminated backend).

    Instead of `pool_pre_ping`, which costs three round trips per checkout with asyncpg
    (BEGIN, a ping, ROLLBACK), ask the driver: asyncpg marks its connection closed as
    soon as the server hangs up. The pool then discards it and connects afresh.
    """
    driver = record.driver_connection  # an asyncpg Connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


_Obj = TypeVar("_Obj")


def attach_as_loaded(session: AsyncSession, obj: _Obj) -> _Obj:
    """Put a new object, whose row a Core statement just inserted, in the session as persistent.

    Every column attribute must be set (as a load would have): nothing is emitted now,
    and later changes to the object are flushed as UPDATEs like any loaded object's.
    """
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run `callback` once the owning unit of work has committed (never on rollback)."""
    session.info.setdefault("after_commit", []).append(callback)


def enqueue_after_commit(session: AsyncSession, job: str, *args: object, job_id: str) -> None:
    """Enqueue an arq job once the transaction commits; `job_id` makes it idempotent.

    Sessions opened without a queue (scripts, some tests) skip this; the periodic
    sweepers pick such rows up instead.
    """
    queue = session.info.get("queue")
    if queue is None:
        return

    async def _enqueue() -> None:
        await queue.enqueue_job(job, *args, _job_id=job_id)

    after_commit(session, _enqueue)


@asynccontextmanager
async def unit_of_work(
    maker: async_sessionmaker[AsyncSession], *, queue: Any = None
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on error, then run after-commit hooks."""
    async with maker() as session:
        session.info["queue"] = queue
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    for callback in callbacks:
        await callback()
