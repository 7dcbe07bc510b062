"""API keys (hashed at rest) and the audit log."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from booking_tools.admin.models import ApiKey, AuditEntry, Role
from hibachi.errors import NotFound


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


async def create_api_key(
    session: AsyncSession, *, name: str, role: Role, raw_key: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the raw key (shown once, stored only as a hash)."""
    raw = raw_key or "hk_" + secrets.token_urlsafe(32)
    key = ApiKey(name=name, role=role, key_hash=hash_key(raw), prefix=raw[:10])
    session.add(key)
    await session.flush()
    return key, raw


async def ensure_api_key(session: AsyncSession, *, name: str, role: Role, raw_key: str) -> ApiKey:
    """Idempotently make sure a key with this raw value exists (bootstrap admin key).

    Safe when several processes start at once: the insert yields to a concurrent one.
    """
    await session.execute(
        insert(ApiKey)
        .values(id=uuid.uuid4(), name=name, role=role, key_hash=hash_key(raw_key), prefix=raw_key[:10])
        .on_conflict_do_nothing(index_elements=["key_hash"])
    )
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(raw_key)))
    assert key is not None  # inserted above or by a concurrent process
    key.revoked_at = None
    key.role = role
    return key


async def authenticate(session: AsyncSession, raw_key: str) -> ApiKey | None:
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(raw_key)))
    if key is None or key.revoked_at is not None:
        return None
    return key


async def list_api_keys(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


async def revoke_api_key(session: AsyncSession, *, key_id: Any, now: datetime) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("no such API key")
    key.revoked_at = key.revoked_at or now
    return key


async def audit(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Append one audit line (who, what, before/after) in the caller's transaction."""
    session.add(
        AuditEntry(
            **audit_values(
                actor=actor, action=action, entity=entity, entity_id=entity_id, before=before, after=after
            )
        )
    )


def audit_values(
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The column values of one audit line, for writers that insert it with other rows."""
    return {
        "id": uuid.uuid4(),
        "actor": actor,
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id),
        "before": before,
        "after": after,
    }


async def list_audit(
    session: AsyncSession, *, entity_id: str | None, limit: int, offset: int
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id)
    if entity_id:
        query = query.where(AuditEntry.entity_id == entity_id)
    return list(await session.scalars(query.limit(limit).offset(offset)))
