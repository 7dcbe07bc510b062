"""The unit of work and its connection pool."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import text

from hibachi.context import AppContext
from hibachi.db import unit_of_work
from hibachi.settings import Settings


async def test_connections_the_server_closed_are_replaced_before_use(
    app_ctx: AppContext, settings: Settings
) -> None:
    async def backend_pid() -> int:
        async with unit_of_work(app_ctx.sessions) as session:
            pid = await session.scalar(text("SELECT pg_backend_pid()"))
        assert isinstance(pid, int)
        return pid

    before = set(await asyncio.gather(*(backend_pid() for _ in range(4))))
    assert settings.database_url is not None
    admin = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        for pid in before:
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.1)  # the server's goodbye reaches the pooled connections
    after = await asyncio.gather(*(backend_pid() for _ in range(4)))
    assert not before & set(after)
