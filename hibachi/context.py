"""Process-wide resources built in the app lifespan (or by the worker) and shared by both."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hibachi.db import create_engine, create_sessionmaker
from hibachi.settings import Settings

if TYPE_CHECKING:
    from arq.connections import ArqRedis


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppContext:
    """Everything a request handler or job needs beyond its own arguments."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    queue: ArqRedis
    extras: dict[str, Any] = field(default_factory=dict)

    async def close(self) -> None:
        await self.queue.aclose()
        await self.redis.aclose()
        await self.engine.dispose()


async def build_context(settings: Settings) -> AppContext:
    from arq import create_pool

    from hibachi.jobs import arq_redis_settings

    engine = create_engine(settings)
    redis = Redis.from_url(_redis_url(settings))
    queue = await create_pool(arq_redis_settings(settings))
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=create_sessionmaker(engine),
        redis=redis,
        queue=queue,
    )


def _redis_url(settings: Settings) -> str:
    if settings.redis_url is None:
        raise RuntimeError("redis_url is not resolved; start the embedded servers first")
    return settings.redis_url
