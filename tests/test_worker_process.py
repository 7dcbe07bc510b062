"""Scale-out: `hibachi worker` as its own process sends what the web process queued."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from booking_tools.messaging.models import MessageStatus, OutboundMessage
from hibachi.settings import Settings
from telephony.fakes import FakeTwilio
from tests.conftest import RC_JWT
from tests.factories import create_booking


async def test_standalone_worker_sends_queued_texts(
    client: httpx.AsyncClient,
    db: async_sessionmaker[AsyncSession],
    settings: Settings,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
) -> None:
    await create_booking(client, customer_phone="+14085550180")
    env = os.environ | {
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": str(settings.redis_url),
        "HIBACHI_DATA_DIR": str(tmp_path),
        "PUBLIC_BASE_URL": settings.public_base_url,
        "TWILIO_API_BASE": fake_twilio.base_url,
        "RINGCENTRAL_SERVER_URL": str(settings.ringcentral_server_url),
        "RINGCENTRAL_CLIENT_ID": str(settings.ringcentral_client_id),
        "RINGCENTRAL_CLIENT_SECRET": str(settings.ringcentral_client_secret),
        "RINGCENTRAL_JWT": RC_JWT,
    }
    hibachi = Path(sys.executable).parent / "hibachi"
    worker = await asyncio.create_subprocess_exec(
        str(hibachi), "worker", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        status = None
        for _ in range(300):  # bounded wait: up to 30 s for the worker to start and send
            async with db() as session:
                status = await session.scalar(
                    select(OutboundMessage.status).where(OutboundMessage.to_phone == "+14085550180")
                )
            if status == MessageStatus.sent:
                break
            await asyncio.sleep(0.1)
        assert status == MessageStatus.sent
        assert [m["to"] for m in fake_twilio.messages] == ["+14085550180"]
    finally:
        worker.terminate()
        await worker.wait()
