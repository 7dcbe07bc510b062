"""Run Alembic migrations programmatically (used by `hibachi serve` and the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(async_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", async_url.replace("%", "%%"))
    return cfg


def upgrade(async_url: str) -> None:
    """Migrate to the newest schema (Alembic runs its own event loop, so call off-loop)."""
    command.upgrade(alembic_config(async_url), "heads")


async def upgrade_async(async_url: str) -> None:
    await asyncio.to_thread(upgrade, async_url)
