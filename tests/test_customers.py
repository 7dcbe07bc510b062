"""Customers through the HTTP API: E.164 identity, preferences, opt-out, merging duplicates."""

from __future__ import annotations

import httpx

from booking_tools.admin.models import Role
from tests.conftest import ClientMaker
from tests.factories import create_booking


async def test_customers_are_stored_and_returned_in_e164(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/customers", json={"phone": "(916) 555-0131", "name": "Riley Chen"})
    assert created.status_code == 201
    assert created.json()["phone"] == "+19165550131"
    fetched = await client.get("/v1/customers/916.555.0131")
    assert fetched.status_code == 200
    assert fetched.json()["name"] == "Riley Chen"
    duplicate = await client.post("/v1/customers", json={"phone": "+1 916 555 0131"})
    assert duplicate.status_code == 409
    assert duplicate.json()["error"] == "CustomerExists"


async def test_unknown_customer_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/customers/+14085559999")
    assert response.status_code == 404
    assert response.json()["error"] == "CustomerNotFound"


async def test_texting_preferences_can_be_changed_and_are_audited(client_as: ClientMaker) -> None:
    staff = await client_as(Role.staff)
    await staff.post("/v1/customers", json={"phone": "+14085550132"})
    updated = await staff.patch(
        "/v1/customers/+14085550132", json={"sms_marketing": True, "language": "es", "name": "Ana Ruiz"}
    )
    assert updated.status_code == 200
    body = updated.json()
    assert (body["sms_marketing"], body["language"], body["name"]) == (True, "es", "Ana Ruiz")
    admin = await client_as(Role.admin)
    [entry] = [
        e for e in (await admin.get("/v1/admin/audit")).json()["items"] if e["action"] == "customer.update"
    ]
    assert entry["before"]["sms_marketing"] is False
    assert entry["after"]["sms_marketing"] is True


async def test_opt_out_and_back_in(client: httpx.AsyncClient) -> None:
    out = await client.post("/v1/customers/4085550133/opt-out")
    assert out.status_code == 200
    assert out.json()["opted_out"] is True
    back = await client.post("/v1/customers/4085550133/opt-in")
    assert back.json()["opted_out"] is False


async def test_merging_a_duplicate_moves_its_bookings(client: httpx.AsyncClient) -> None:
    await client.post("/v1/customers", json={"phone": "+14085550134", "name": "Sam Lee"})
    booking = await create_booking(client, customer_phone="+14085550135", customer_name="Sam Lee")
    merged = await client.post("/v1/customers/+14085550134/merge", json={"duplicate_phone": "+14085550135"})
    assert merged.status_code == 200
    moved = (await client.get("/v1/bookings", params={"phone": "+14085550134"})).json()["items"]
    assert [b["id"] for b in moved] == [booking["id"]]
    again = await client.post("/v1/customers/+14085550134/merge", json={"duplicate_phone": "+14085550135"})
    assert again.status_code == 409
    itself = await client.post("/v1/customers/+14085550134/merge", json={"duplicate_phone": "+14085550134"})
    assert itself.status_code == 422


async def test_analysts_can_read_but_not_change_customers(client_as: ClientMaker) -> None:
    analyst = await client_as(Role.analyst)
    assert (await analyst.get("/v1/customers")).status_code == 200
    assert (await analyst.post("/v1/customers", json={"phone": "+14085550136"})).status_code == 403
