"""Local servers that speak each provider's wire protocol, shared by tests, benchmarks and evals.

    with FakeTwilio() as twilio, FakeRingCentral() as rc:
        settings = Settings(twilio_api_base=twilio.base_url, ringcentral_server_url=rc.base_url)
"""

from __future__ import annotations

from telephony.fakes.ringcentral_server import FakeRingCentral
from telephony.fakes.server import LocalServer, RecordedRequest, ServedFake
from telephony.fakes.twilio_server import FakeTwilio, count_segments

__all__ = [
    "FakeRingCentral",
    "FakeTwilio",
    "LocalServer",
    "RecordedRequest",
    "ServedFake",
    "count_segments",
]
