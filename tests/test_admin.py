"""API keys: roles, one-time raw key, hashing at rest, revocation, audit."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_tools.admin.models import ApiKey
from tests.conftest import PUBLIC_BASE_URL


async def test_admin_creates_a_key_that_works_and_is_stored_hashed(
    client: httpx.AsyncClient, app: object, db: async_sessionmaker[AsyncSession]
) -> None:
    created = await client.post("/v1/admin/api-keys", json={"name": "front desk", "role": "staff"})
    assert created.status_code == 201
    raw = created.json()["key"]
    async with db() as session:
        stored = await session.scalar(select(ApiKey).where(ApiKey.name == "front desk"))
    assert stored is not None
    assert raw not in (stored.key_hash, stored.prefix)
    listed = (await client.get("/v1/admin/api-keys")).json()["items"]
    assert "key" not in listed[0]
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # FastAPI is ASGI
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_BASE_URL) as staff:
        ok = await staff.get("/v1/locations", headers={"Authorization": f"Bearer {raw}"})
        assert ok.status_code == 200
        revoked = await client.delete(f"/v1/admin/api-keys/{created.json()['id']}")
        assert revoked.json()["revoked_at"] is not None
        after = await staff.get("/v1/locations", headers={"Authorization": f"Bearer {raw}"})
        assert after.status_code == 401
    actions = [e["action"] for e in (await client.get("/v1/admin/audit")).json()["items"]]
    assert {"api_key.create", "api_key.revoke"} <= set(actions)


async def test_unknown_key_id_is_404(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/admin/api-keys/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
