"""The brain's hot state per conversation, in Redis, so any worker can take the next message."""

from __future__ import annotations

import json
import uuid
from typing import Any

from redis.asyncio import Redis

STATE_TTL_SECONDS = 7 * 24 * 3600


def _key(conversation_id: uuid.UUID) -> str:
    return f"hibachi:conversation:{conversation_id}:state"


async def load_state(redis: Redis, conversation_id: uuid.UUID) -> dict[str, Any]:
    raw = await redis.get(_key(conversation_id))
    return dict(json.loads(raw)) if raw else {}


async def save_state(redis: Redis, conversation_id: uuid.UUID, state: dict[str, Any]) -> None:
    await redis.set(_key(conversation_id), json.dumps(state, default=str), ex=STATE_TTL_SECONDS)


def conversation_lock_name(conversation_id: uuid.UUID) -> str:
    return f"hibachi:conversation:{conversation_id}:lock"
