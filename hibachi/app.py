"""The FastAPI application: routers, error rendering, health, metrics, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest, multiprocess
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent import tokens
from agent.router import router as conversations_router
from agent.runtime import build_engine
from agent.speech.factory import build_stt, build_tts
from agent.voice.session import VoiceConfig
from booking_tools.admin.models import Role
from booking_tools.admin.router import router as admin_router
from booking_tools.admin.service import ensure_api_key
from booking_tools.bookings.router import router as bookings_router
from booking_tools.customers.router import router as customers_router
from booking_tools.deposits.providers import BuiltinPayments, PaymentProvider
from booking_tools.deposits.router import router as pay_router
from booking_tools.deposits.stripe_router import router as stripe_router
from booking_tools.locations.router import router as locations_router
from booking_tools.loyalty.router import router as loyalty_router
from booking_tools.messaging.providers import build_senders
from booking_tools.messaging.router import router as messaging_router
from booking_tools.reminders.router import router as reminders_router
from booking_tools.waitlist.router import router as waitlist_router
from hibachi.context import AppContext, build_context
from hibachi.db import unit_of_work
from hibachi.errors import DomainError
from hibachi.jobs import worker_running
from hibachi.settings import Settings
from knowledge.embeddings import build_embedder
from knowledge.ingest import ensure_ingested
from telephony.ringcentral.webhook import router as ringcentral_router
from telephony.twilio.media import router as twilio_media_router
from telephony.twilio.sms import router as twilio_sms_router
from telephony.twilio.status import router as twilio_status_router
from telephony.twilio.voice import router as twilio_voice_router

log = logging.getLogger(__name__)

REQUEST_SECONDS = Histogram(
    "hibachi_http_request_seconds",
    "HTTP request latency by route",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

GC_PAUSE = Histogram(
    "hibachi_gc_pause_seconds",
    "Passes of the cyclic garbage collector by generation (each stalls the event loop)",
    ["generation"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)


class GcPauses:
    """A `gc.callbacks` hook: times each collector pass into `GC_PAUSE`."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - self._started)


GC_PAUSES = GcPauses()
FULL_PASS_AFTER = 100  # middle-generation passes per full collector pass (Python's default: 10)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Provider clients that log every request at INFO: httpx/httpx2 (the OpenAI SDK's
# transport) a line per model request, twilio ~10 lines per REST call with its headers.
# Per-request noise in the server's log, and CPU on every model request under load.
CHATTY_CLIENT_LOGGERS = ("httpx", "httpx2", "twilio")


def configure_logging(level: int = logging.INFO) -> None:
    """Root logging for `hibachi serve`/`worker` and each `--workers` process; chatty clients at WARNING."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for name in CHATTY_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


class RequestMetrics:
    """Pure ASGI middleware: request latency by route template into a Prometheus histogram."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            REQUEST_SECONDS.labels(scope["method"], getattr(route, "path", "unmatched"), str(status)).observe(
                time.perf_counter() - started
            )


def build_payments(settings: Settings) -> PaymentProvider:
    if settings.stripe_api_key:
        from booking_tools.deposits.stripe_provider import StripePayments

        return StripePayments(settings)
    return BuiltinPayments(settings.public_base_url)


async def start(settings: Settings) -> AppContext:
    """Build the shared context: connections, providers, bootstrap admin key."""
    ctx = await build_context(settings)
    ctx.extras["payments"] = build_payments(settings)
    ctx.extras["sms_senders"] = build_senders(settings)
    ctx.extras["embedder"] = build_embedder(settings)
    await ensure_ingested(ctx)
    ctx.extras["engine"] = build_engine(ctx)
    # Build the tokenizer now, not inside the first call's model request (~0.5 s of CPU).
    await asyncio.to_thread(tokens.encoding_for, settings.hibachi_llm_model)
    ctx.extras["stt"] = build_stt(settings)
    ctx.extras["tts"] = build_tts(settings)
    ctx.extras["voice_config"] = VoiceConfig(menu=settings.hibachi_voice_menu)
    if settings.hibachi_admin_api_key:
        async with unit_of_work(ctx.sessions) as session:
            await ensure_api_key(
                session, name="bootstrap-admin", role=Role.admin, raw_key=settings.hibachi_admin_api_key
            )
    return ctx


def error_body(name: str, detail: Any) -> dict[str, Any]:
    return {"error": name, "detail": detail}


def sqlstate(exc: DBAPIError) -> str:
    """The PostgreSQL error code behind a driver error ('' if unknown)."""
    for err in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(error_body(exc.name, exc.detail), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(error_body("ValidationError", "; ".join(problems)), status_code=422)

    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        # SQLSTATE class 22 is "data exception": the input (a NUL byte, an out-of-range
        # number or date) can't be stored. Anything else is a real server error.
        if sqlstate(exc).startswith("22"):
            return JSONResponse(
                error_body("InvalidInput", "the request contains a value that can't be stored"),
                status_code=422,
            )
        raise exc

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = {404: "NotFound", 405: "MethodNotAllowed", 401: "Unauthorized"}.get(
            exc.status_code, "HTTPError"
        )
        return JSONResponse(
            error_body(name, exc.detail), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )


def metrics_text() -> bytes:
    """Prometheus exposition; with several worker processes, all of theirs summed.

    `hibachi serve --workers N` sets `PROMETHEUS_MULTIPROC_DIR` before the workers start,
    so each writes its samples there; any worker answering /metrics reads them all.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        return generate_latest(registry)
    return generate_latest()


def create_app(settings: Settings, *, context: AppContext | None = None) -> FastAPI:
    """The app. With `context`, the caller owns connections and the worker (tests)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if context is not None:
            app.state.ctx = context
            yield
            return
        ctx = await start(settings)
        app.state.ctx = ctx
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # collector's full passes, which otherwise stall the event loop (and every live
        # call's audio) for 100-200 ms each under load.
        if GC_PAUSES not in gc.callbacks:
            gc.callbacks.append(GC_PAUSES)
        gc.collect()
        gc.freeze()
        # A full pass walks every live object (all calls' state): 100-250 ms at 100 calls, a
        # stall every live call hears. Python runs one after 10 middle-generation passes
        # (~30 s under that load); after 100 (~5 min) they leave the steady state's turns be,
        # and the rarer passes find cyclic garbage all the same (benchmarks/RESULTS.md).
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_PASS_AFTER)
        try:
            async with worker_running(ctx) if settings.hibachi_run_worker else contextlib.nullcontext():
                yield
        finally:
            await ctx.extras["engine"].close()
            await ctx.extras["tts"].aclose()
            await ctx.close()

    app = FastAPI(
        title="My Hibachi agent and back office",
        version="0.1.0",
        lifespan=lifespan,
        description="Business API (`/v1`, Bearer API key), provider webhooks, health and metrics.",
    )
    install_error_handlers(app)

    app.add_middleware(RequestMetrics)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        ctx: AppContext = request.app.state.ctx
        checks: dict[str, str] = {}
        try:
            async with ctx.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # readiness reports any failure instead of raising
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            await ctx.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # as above
            checks["redis"] = f"error: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", **checks}, status_code=200 if ready else 503
        )

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)

    for router in (
        locations_router,
        bookings_router,
        customers_router,
        loyalty_router,
        waitlist_router,
        messaging_router,
        reminders_router,
        admin_router,
        pay_router,
        stripe_router,
        twilio_status_router,
        twilio_sms_router,
        twilio_voice_router,
        twilio_media_router,
        ringcentral_router,
        conversations_router,
    ):
        app.include_router(router)
    return app
