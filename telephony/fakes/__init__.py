"""Local servers that speak each provider's wire protocol, shared by tests, benchmarks and evals.

Each fake is an ASGI `app` plus `start()` / `stop()` / `base_url` (or a `with` block);
point the real SDKs at it with `TWILIO_API_BASE` / `RINGCENTRAL_SERVER_URL` / `OPENAI_BASE_URL`.
"""

from __future__ import annotations

from telephony.fakes.openai_server import FakeOpenAI
from telephony.fakes.ringcentral_server import FakeRingCentral
from telephony.fakes.server import LocalServer, RecordedRequest, ServedFake
from telephony.fakes.twilio_server import FakeTwilio
from telephony.sms_segments import count_segments

__all__ = [
    "FakeOpenAI",
    "FakeRingCentral",
    "FakeTwilio",
    "LocalServer",
    "RecordedRequest",
    "ServedFake",
    "count_segments",
]
