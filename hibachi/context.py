"""Process-wide resources built in the app lifespan (or by the worker) and shared by both."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agent.aio import aclose_if_closable
from booking_tools.admin.models import Role
from hibachi.db import create_engine, create_sessionmaker
from hibachi.settings import Settings

if TYPE_CHECKING:
    from arq.connections import ArqRedis


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling the API: an API key's id, name and role."""

    key_id: str
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.name}"


class PrincipalCache:
    """Authenticated API keys for a few seconds, so a request doesn't re-query its key.

    Revoking a key clears this process's cache at once; other processes notice
    within `ttl` seconds.
    """

    def __init__(self, ttl: float = 10.0, max_size: int = 1024) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._entries: dict[str, tuple[float, Principal]] = {}

    @staticmethod
    def _key(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    def get(self, raw: str) -> Principal | None:
        entry = self._entries.get(self._key(raw))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, raw: str, principal: Principal) -> None:
        if len(self._entries) >= self.max_size:
            self._entries.clear()
        self._entries[self._key(raw)] = (time.monotonic() + self.ttl, principal)

    def clear(self) -> None:
        self._entries.clear()


@dataclass
class AppContext:
    """Everything a request handler or job needs beyond its own arguments."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    queue: ArqRedis
    extras: dict[str, Any] = field(default_factory=dict)
    principals: PrincipalCache = field(default_factory=PrincipalCache)

    async def close(self) -> None:
        await aclose_if_closable(self.extras.get("embedder"))
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
