"""The README's run command: `hibachi serve` on embedded defaults, probed like curl would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from hibachi.app import create_app
from hibachi.sched import get_slice, thread_ids
from hibachi.settings import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, Settings
from telephony.twilio.call_sim import SimulatedCall
from tests.live_server import LiveServer, live_server

HIBACHI = Path(sys.executable).parent / "hibachi"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("serve")) as running:
        yield running


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {server.admin_key}"}
    ) as client:
        yield client


def test_fresh_start_is_ready_with_embedded_postgres_and_redis(api: httpx.Client) -> None:
    assert api.get("/readyz").json() == {"status": "ready", "database": "ok", "redis": "ok"}
    assert api.get("/healthz").status_code == 200


def test_fresh_start_seeds_the_reference_locations(api: httpx.Client) -> None:
    slugs = {loc["slug"] for loc in api.get("/v1/locations").json()["items"]}
    assert slugs == {"bay-area", "sacramento"}


def test_fresh_start_books_through_the_api(api: httpx.Client) -> None:
    day = (date.today() + timedelta(days=9)).isoformat()
    slots = api.get("/v1/availability", params={"location": "bay-area", "date": day}).json()["slots"]
    assert [s["start"] for s in slots] == ["12:00", "15:00", "18:00"]
    created = api.post(
        "/v1/bookings",
        json={
            "location": "bay-area",
            "customer_phone": "408 555 0142",
            "customer_name": "Pat Doe",
            "event_date": day,
            "start_time": "15:00",
            "adults": 10,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "pending_deposit"
    assert body["quote"]["food_subtotal"] == 550
    assert body["deposit"]["amount"] == 100
    after = api.get("/v1/availability", params={"location": "bay-area", "date": day}).json()["slots"]
    assert {s["start"]: s["remaining"] for s in after}["15:00"] == 2


def test_demo_customers_are_seeded_with_loyalty(api: httpx.Client) -> None:
    loyalty = api.get("/v1/customers/+14085550125/loyalty")
    assert loyalty.status_code == 200
    assert loyalty.json()["tier"] == "gold"


# The schema is the app's own OpenAPI document; building the app connects to nothing.
openapi_schema = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi())


@openapi_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx_to_generated_input(
    case: schemathesis.Case[Any], server: LiveServer
) -> None:
    case.call_and_validate(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {server.admin_key}"},
        checks=[not_a_server_error],
    )


def test_hibachi_sms_posts_a_signed_text_and_prints_the_reply(server: LiveServer) -> None:
    day = date.today() + timedelta(days=11)
    result = subprocess.run(
        [
            *(str(HIBACHI), "sms", "--from", "(408) 555-0150", "--to", "+14085550199"),
            *("--url", server.base_url, f"what's open on {day:%B} {day.day}?"),
        ],
        env={**os.environ, "PUBLIC_BASE_URL": server.base_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "6 pm" in result.stdout


def test_hibachi_sms_reports_a_refused_signature(server: LiveServer) -> None:
    result = subprocess.run(
        [
            str(HIBACHI),
            "sms",
            "--from",
            "+14085550150",
            "--to",
            "+14085550199",
            "--url",
            server.base_url,
            "hi",
        ],
        env={**os.environ, "PUBLIC_BASE_URL": "https://somewhere-else.test"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "403" in result.stderr


def test_hibachi_chat_completes_a_booking_with_no_keys(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("chat")
    data_dir.chmod(0o755)
    day = date.today() + timedelta(days=12)
    lines = [f"what's open on {day:%B} {day.day}?", "6pm for 15 adults", "Jane Roe", "yes"]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY")}
    result = subprocess.run(
        [str(HIBACHI), "chat", "--phone", "+14085550151"],
        input="\n".join(lines) + "\n",
        env={**env, "HIBACHI_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    replies = [line for line in result.stdout.splitlines() if "agent> " in line]
    assert len(replies) == 4
    assert "Shall I book it?" in replies[2]
    assert "booking code is" in replies[3]
    assert "deposit" in replies[3]


def test_hibachi_call_books_by_voice_on_local_engines(server: LiveServer) -> None:
    day = date.today() + timedelta(days=13)
    lines = [
        # The date ends the sentence: "December 20 at" can sound like "December 28th" to
        # the small offline recogniser.
        f"Hi, I'd like to book a party for 12 adults at 6 pm on {day:%B} {day.day}.",
        "My name is Maria Lopez.",
    ]
    result = subprocess.run(
        [str(HIBACHI), "call", "--from", "+14085550152", "--to", "+14085550199", "--url", server.base_url]
        + [arg for line in [*lines, "Yes please."] for arg in ("--say", line)],
        env={**os.environ, "PUBLIC_BASE_URL": server.base_url, "HIBACHI_ADMIN_API_KEY": server.admin_key},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "speech end -> first agent audio" in result.stdout
    assert "first_audio_sent" in result.stdout  # the server's per-turn breakdown
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {server.admin_key}"}
    ) as api:
        bookings = api.get("/v1/bookings", params={"phone": "+14085550152"}).json()["items"]
        assert len(bookings) == 1, result.stdout  # the printed call shows what was heard
        [booking] = bookings
        conversation = api.get("/v1/conversations", params={"phone": "+14085550152"}).json()["items"][0]
    assert (booking["event_date"], booking["start_time"], booking["adults"]) == (day.isoformat(), "18:00", 12)
    assert booking["status"] == "pending_deposit"
    assert conversation["channel"] == "voice"


def _thread_slices(pid: int) -> set[int]:
    return {get_slice(tid) for tid in thread_ids(pid)}


def _python_children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children if b"python" in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_serve_runs_every_thread_on_the_configured_scheduler_slice(server: LiveServer) -> None:
    configured = Settings(_env_file=None).hibachi_sched_slice_us * 1000
    assert configured == 6_000_000
    assert _thread_slices(server.process.pid) == {configured}  # the loop's, the executors', the DB's


@pytest.mark.parametrize("slice_us", [1, 99, 100_001])
def test_a_scheduler_slice_the_kernel_would_refuse_is_a_settings_error(slice_us: int) -> None:
    with pytest.raises(ValueError, match="hibachi_sched_slice_us"):
        Settings(_env_file=None, hibachi_sched_slice_us=slice_us)


def test_serve_with_two_workers_shares_one_database_and_sums_their_metrics(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with live_server(
        tmp_path_factory.mktemp("workers"), workers=2, env={"HIBACHI_SCHED_SLICE_US": "3000"}
    ) as running:
        workers = _python_children(running.process.pid)
        assert len(workers) >= 2  # the two workers (and multiprocessing's helper, if it runs one)
        for pid in [running.process.pid, *workers]:  # the workers inherit the server's slice
            assert _thread_slices(pid) == {3_000_000}
        headers = {"Authorization": f"Bearer {running.admin_key}"}
        requests = 40
        for _ in range(requests):  # a new connection each time: the kernel spreads them over the workers
            response = httpx.get(f"{running.base_url}/v1/locations", headers=headers, timeout=10)
            assert response.status_code == 200
            assert {loc["slug"] for loc in response.json()["items"]} == {"bay-area", "sacramento"}
        metrics = httpx.get(f"{running.base_url}/metrics", timeout=10).text
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("hibachi_http_request_seconds_count{") and 'route="/v1/locations"' in line
    ]
    assert sum(counted) == requests
    full_passes = [  # each worker's full collection before it froze its start-up objects
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('hibachi_gc_pause_seconds_count{generation="2"}')
    ]
    assert sum(full_passes) >= 2
    log = running.log.read_text()
    assert log.count("Application startup complete") == 2


def test_server_logging_keeps_our_lines_and_drops_provider_clients_request_dumps() -> None:
    # What `hibachi serve`, `hibachi worker` and each `--workers` process set up: the real
    # twilio client dumps every REST call (headers included) at INFO, httpx2 (the OpenAI
    # SDK's transport) a line per model request; ours stay at INFO.
    script = """
import logging
from hibachi.app import configure_logging
from twilio.http.http_client import TwilioHttpClient
configure_logging()
TwilioHttpClient().log_request(
    {"method": "POST", "url": "https://api.twilio.com/2010-04-01/Calls/CA1.json", "params": None,
     "headers": {"User-Agent": "twilio-python"}}
)
logging.getLogger("httpx2").info("HTTP Request: POST https://api.openai.com/v1/chat/completions")
logging.getLogger("agent.voice.session").info("transferring call CA1 to +14085550100")
logging.getLogger("twilio.http_client").warning("Twilio answered 503")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "INFO agent.voice.session: transferring call CA1 to +14085550100" in result.stderr
    assert "WARNING twilio.http_client: Twilio answered 503" in result.stderr
    assert "Twilio API Request" not in result.stderr
    assert "HTTP Request" not in result.stderr


async def test_sigterm_mid_call_stops_promptly_and_keeps_the_call(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("grace")
    caller = "+14085550177"
    with live_server(data_dir, env={"HIBACHI_SHUTDOWN_GRACE_SECONDS": "1"}) as running:
        async with SimulatedCall(
            running.base_url,
            running.base_url,
            DEV_TWILIO_AUTH_TOKEN,
            DEV_TWILIO_ACCOUNT_SID,
            caller,
            "+14085550199",
            timeout=60,
        ) as call:
            await call.wait_for_agent_silence(quiet_for=0.5)  # greeted; the caller stays on the line
            started = time.monotonic()
            running.process.terminate()
            await asyncio.to_thread(running.process.wait, 30)
            stopped_after = time.monotonic() - started
            await asyncio.wait_for(call.wait_closed(), 10)  # the server hung up
    assert stopped_after < 15, stopped_after  # the call is cut, not waited out
    with live_server(data_dir) as again:  # the same data, restarted
        headers = {"Authorization": f"Bearer {again.admin_key}"}
        async with httpx.AsyncClient(base_url=again.base_url, headers=headers) as api:
            [summary] = (await api.get("/v1/conversations", params={"phone": caller})).json()["items"]
            detail = (await api.get(f"/v1/conversations/{summary['id']}")).json()
    assert summary["channel"] == "voice"
    assert summary["ended_at"] is not None
    assert detail["messages"][0]["text"].startswith("Good ")  # the greeting is on record
    assert detail["cost"]["stt_seconds"] > 0
