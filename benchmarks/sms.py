"""Text-message benchmark: per-message latency and throughput through the signed Twilio webhook.

Starts `hibachi serve` on a throwaway embedded PostgreSQL/Redis and texts it from many
customers at a fixed concurrency; each webhook answers with the agent's reply in TwiML,
so the latency is the whole turn (store, brain, tools, transcript, reply). Runs with the
deterministic brain and with the LLM brain against a zero-latency local OpenAI-protocol
server (one tool call and one answer per message), which measures our own overhead.

    .venv/bin/python -m benchmarks.sms [--messages 300] [--concurrency 8] [--brain both]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from benchmarks.api import free_port, percentile, wait_ready
from hibachi.settings import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN
from telephony.fakes.openai_server import DEFAULT_API_KEY, FakeOpenAI, Reply, ToolCallSpec
from telephony.twilio.client_sim import sms_webhook_form, twiml_messages
from telephony.twilio.signature import SIGNATURE_HEADER, sign

ROOT = Path(__file__).resolve().parent.parent
AGENT = "+14085550199"


def scripted_model(body: dict[str, Any]) -> Reply:
    """A zero-latency model: look up availability, then answer in one sentence."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return Reply(text="That day has openings at 12, 3 and 6 pm. Which time works for you?")
    day = (date.today() + timedelta(days=10)).isoformat()
    return Reply(tool_calls=[ToolCallSpec("check_availability", {"event_date": day})])


async def drive(base: str, messages: int, concurrency: int) -> tuple[list[float], float, int, dict[int, int]]:
    day = date.today() + timedelta(days=10)
    texts = iter(range(messages))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    replied = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal replied
        for i in texts:
            form = sms_webhook_form(
                account_sid=DEV_TWILIO_ACCOUNT_SID,
                from_phone=f"+1408556{i % 10000:04d}",
                to_phone=AGENT,
                body=f"Hi! Do you have anything open on {day:%B} {day.day}?",
            )
            signature = sign(f"{base}/twilio/sms", form, DEV_TWILIO_AUTH_TOKEN)
            started = time.perf_counter()
            response = await client.post("/twilio/sms", data=form, headers={SIGNATURE_HEADER: signature})
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200 and twiml_messages(response.text):
                replied += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return latencies, time.perf_counter() - started, replied, statuses


async def run_one(brain: str, messages: int, concurrency: int) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir, FakeOpenAI() as model:
        model.responder = scripted_model
        env = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY")
        }
        env |= {"HIBACHI_DATA_DIR": data_dir, "PUBLIC_BASE_URL": base}
        if brain == "llm":
            env |= {"OPENAI_API_KEY": DEFAULT_API_KEY, "OPENAI_BASE_URL": model.base_url}
        # The server starts once, before any measurement; blocking here is harmless.
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "hibachi.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        try:
            await wait_ready(base, proc)
            await drive(base, min(20, messages), concurrency)  # warm-up
            latencies, elapsed, replied, statuses = await drive(base, messages, concurrency)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    label = "deterministic" if brain == "deterministic" else "llm (local 0-latency model)"
    print(
        f"{label:<28} n={len(latencies):<4} p50={percentile(latencies, 50):6.1f} ms  "
        f"p95={percentile(latencies, 95):6.1f} ms  max={max(latencies):6.1f} ms  "
        f"{len(latencies) / elapsed:6.1f} msg/s  replied={replied}/{len(latencies)}  statuses={statuses}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--brain", choices=["deterministic", "llm", "both"], default="both")
    args = parser.parse_args()
    print(
        f"hibachi SMS benchmark: {args.messages} texts from distinct customers, "
        f"concurrency {args.concurrency}, {os.cpu_count()} CPUs, one server process + embedded "
        "PostgreSQL/Redis, load generator on the same machine"
    )
    for brain in ("deterministic", "llm") if args.brain == "both" else (args.brain,):
        asyncio.run(run_one(brain, args.messages, args.concurrency))


if __name__ == "__main__":
    main()
