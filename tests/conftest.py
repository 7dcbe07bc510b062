"""Shared fixtures: a real PostgreSQL+pgvector and Redis (embedded unless `DATABASE_URL` /
`REDIS_URL` are set), migrated once per run; every test starts from truncated tables
with the reference locations seeded."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import hibachi.models  # noqa: F401  (full metadata for truncation)
from booking_tools.admin.models import Role
from booking_tools.admin.service import create_api_key
from booking_tools.seed import seed_locations
from hibachi.app import create_app, start
from hibachi.context import AppContext
from hibachi.db import Base, unit_of_work
from hibachi.embedded import resolve
from hibachi.jobs import build_worker
from hibachi.migrate import upgrade
from hibachi.settings import Settings
from knowledge.embeddings import LocalMiniLM
from knowledge.ingest import ingest
from telephony.fakes import FakeOpenAI, FakeRingCentral, FakeTwilio
from tests.knowledge_support import RecordingEmbedder

PUBLIC_BASE_URL = "https://agent.test"
RC_JWT = "test-ringcentral-jwt"
RC_VERIFICATION_TOKEN = "test-ringcentral-verification-token"
AGENT_NUMBERS = ("+14085550199", "+19165550199")


@pytest.fixture(scope="session")
def fake_twilio() -> Iterator[FakeTwilio]:
    """The local Twilio REST server every test's texts really go to (through the SDK)."""
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_ringcentral() -> Iterator[FakeRingCentral]:
    """The local RingCentral REST server (JWT auth, SMS) for the Sacramento number."""
    with FakeRingCentral(jwt=RC_JWT, phone_numbers=AGENT_NUMBERS) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    """The local OpenAI-protocol server (chat completions with scripted tool calls, embeddings)."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def reset_fakes(request: pytest.FixtureRequest) -> None:
    """Forget what the provider fakes recorded (only when the test uses them)."""
    for name in ("fake_twilio", "fake_ringcentral", "fake_openai"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


@pytest.fixture(scope="session")
def settings(fake_twilio: FakeTwilio, fake_ringcentral: FakeRingCentral) -> Iterator[Settings]:
    # Not under pytest's 0700 temp root: the embedded server runs as its own OS user.
    data_dir = Path(os.environ.get("HIBACHI_TEST_DATA_DIR") or tempfile.mkdtemp(prefix="hibachi-test-"))
    data_dir.chmod(0o755)
    base = Settings(
        _env_file=None,
        hibachi_data_dir=data_dir,
        database_url=os.environ.get("DATABASE_URL"),
        redis_url=os.environ.get("REDIS_URL"),
        public_base_url=PUBLIC_BASE_URL,
        hibachi_run_worker=False,
        twilio_api_base=fake_twilio.base_url,
        ringcentral_server_url=fake_ringcentral.base_url,
        ringcentral_client_id=fake_ringcentral.client_id,
        ringcentral_client_secret=fake_ringcentral.client_secret,
        ringcentral_jwt=RC_JWT,
        ringcentral_verification_token=RC_VERIFICATION_TOKEN,
    )
    resolved, servers = resolve(base)
    upgrade(resolved.async_database_url)
    yield resolved
    servers.stop()
    if not os.environ.get("HIBACHI_TEST_DATA_DIR"):
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def app_ctx(settings: Settings) -> AsyncIterator[AppContext]:
    ctx = await start(settings)
    yield ctx
    await ctx.close()


@pytest.fixture(scope="session")
def app(settings: Settings, app_ctx: AppContext) -> object:
    application = create_app(settings, context=app_ctx)
    application.state.ctx = app_ctx
    return application


TABLES = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))


@pytest.fixture(autouse=True)
async def clean_state(request: pytest.FixtureRequest) -> None:
    """Empty every table and Redis, then seed the reference locations (DB tests only)."""
    if "app_ctx" not in request.fixturenames:
        return
    ctx: AppContext = request.getfixturevalue("app_ctx")
    async with unit_of_work(ctx.sessions) as session:
        await session.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        await seed_locations(session)
    await ctx.redis.flushdb()


@pytest.fixture
def db(app_ctx: AppContext) -> async_sessionmaker[AsyncSession]:
    """The session factory; open transactions with `unit_of_work(db)`."""
    return app_ctx.sessions


KeyMaker = Callable[[Role], Awaitable[str]]


@pytest.fixture
def make_key(app_ctx: AppContext) -> KeyMaker:
    async def make(role: Role) -> str:
        async with unit_of_work(app_ctx.sessions) as session:
            _, raw = await create_api_key(session, name=f"test-{role.value}", role=role)
        return raw

    return make


ClientMaker = Callable[[Role], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def client_as(app: object, make_key: KeyMaker) -> AsyncIterator[ClientMaker]:
    """Factory: an HTTP client into the app, authenticated with a fresh key of `role`."""
    clients: list[httpx.AsyncClient] = []

    async def make(role: Role) -> httpx.AsyncClient:
        key = await make_key(role)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]  # FastAPI is ASGI
            base_url=PUBLIC_BASE_URL,
            headers={"Authorization": f"Bearer {key}"},
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(client_as: ClientMaker) -> httpx.AsyncClient:
    """An admin-authenticated client."""
    return await client_as(Role.admin)


@pytest.fixture
async def anon(app: object) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]  # FastAPI is ASGI
        base_url=PUBLIC_BASE_URL,
    ) as client:
        yield client


@pytest.fixture
def run_jobs(app_ctx: AppContext) -> Callable[[], Awaitable[None]]:
    """Drain the job queue once with a real arq worker (burst mode), as production would."""

    async def run() -> None:
        worker = build_worker(app_ctx, burst=True)
        try:
            await worker.main()
        finally:
            await worker.close()

    return run


@pytest.fixture(scope="session")
def minilm_memo() -> dict[str, list[float]]:
    """Vectors from the real local model, computed once per run (text -> vector)."""
    return {}


@pytest.fixture
async def knowledge_base(app_ctx: AppContext, minilm_memo: dict[str, list[float]]) -> None:
    """The bundled documents ingested (tables are emptied before every test)."""
    async with unit_of_work(app_ctx.sessions) as session:
        await ingest(session, embedder=RecordingEmbedder(LocalMiniLM(), minilm_memo))
