"""The README's run command: `hibachi serve` on embedded defaults, probed like curl would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from hibachi.app import create_app
from hibachi.settings import Settings
from tests.live_server import LiveServer, live_server


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
