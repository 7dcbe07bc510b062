"""RingCentral delivers texts and call events only to a WebHook subscription: we keep one.

The subscription is created through the real `ringcentral` SDK against the local
RingCentral server, which performs RingCentral's Validation-Token handshake against the
webhook address, so creation is tested with the real `hibachi serve` listening there.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.call_tasks import WEBHOOK_FILTERS, keep_ringcentral_webhook
from hibachi.context import AppContext
from telephony.fakes import FakeRingCentral
from tests.conftest import PUBLIC_BASE_URL, RC_JWT, RC_VERIFICATION_TOKEN
from tests.live_server import live_server

ADDRESS = PUBLIC_BASE_URL + "/ringcentral/webhook"


def _requests(fake: FakeRingCentral, method: str, suffix: str) -> list[int]:
    return [r.status for r in fake.requests if r.method == method and r.path.endswith(suffix)]


def test_serve_subscribes_its_webhook_through_the_validation_handshake(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with FakeRingCentral(jwt=RC_JWT) as fake:
        env = {
            "RINGCENTRAL_SERVER_URL": fake.base_url,
            "RINGCENTRAL_CLIENT_ID": fake.client_id,
            "RINGCENTRAL_CLIENT_SECRET": fake.client_secret,
            "RINGCENTRAL_JWT": RC_JWT,
            "RINGCENTRAL_VERIFICATION_TOKEN": RC_VERIFICATION_TOKEN,
        }
        data_dir: Path = tmp_path_factory.mktemp("rc-subscribe")
        with live_server(data_dir, env=env) as running:
            deadline = time.monotonic() + 30
            while not fake.subscriptions and time.monotonic() < deadline:
                time.sleep(0.2)
        [subscription] = fake.subscriptions.values()
    assert subscription["deliveryMode"]["address"] == running.base_url + "/ringcentral/webhook"
    assert subscription["deliveryMode"]["verificationToken"] == RC_VERIFICATION_TOKEN
    assert set(subscription["eventFilters"]) == set(WEBHOOK_FILTERS)
    assert subscription["status"] == "Active"
    assert _requests(fake, "POST", "/subscription") == [200]


async def test_a_subscription_about_to_expire_is_renewed_and_a_fresh_one_left_alone(
    app_ctx: AppContext, fake_ringcentral: FakeRingCentral
) -> None:
    expiring = fake_ringcentral.add_subscription(
        ADDRESS, WEBHOOK_FILTERS, expires_in=3600, verification_token=RC_VERIFICATION_TOKEN
    )
    assert await keep_ringcentral_webhook({"app": app_ctx}) == "renewed"
    assert _requests(fake_ringcentral, "POST", f"/subscription/{expiring['id']}/renew") == [200]

    fake_ringcentral.reset()
    fake_ringcentral.add_subscription(ADDRESS, WEBHOOK_FILTERS, expires_in=604799)
    assert await keep_ringcentral_webhook({"app": app_ctx}) == "active"
    assert _requests(fake_ringcentral, "POST", "/renew") == []
    assert _requests(fake_ringcentral, "POST", "/subscription") == []
    [fresh] = fake_ringcentral.subscriptions.values()
    expires = datetime.fromisoformat(fresh["expirationTime"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) > timedelta(days=6)


async def test_an_unreachable_webhook_is_not_subscribed_and_is_reported(
    app_ctx: AppContext, fake_ringcentral: FakeRingCentral
) -> None:
    # The test settings' PUBLIC_BASE_URL is nowhere: RingCentral's handshake cannot reach it.
    fake_ringcentral.add_subscription("https://elsewhere.test/hook", WEBHOOK_FILTERS, expires_in=604799)
    assert await keep_ringcentral_webhook({"app": app_ctx}) == "failed"
    assert _requests(fake_ringcentral, "POST", "/subscription") == [400]
    assert [s["deliveryMode"]["address"] for s in fake_ringcentral.subscriptions.values()] == [
        "https://elsewhere.test/hook"
    ]
