"""The real twilio and ringcentral SDK senders against the local protocol servers."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
from collections.abc import Iterator

import pytest
from ringcentral import SDK

from booking_tools.messaging.providers import (
    LogSender,
    PermanentSendError,
    RecipientOptedOut,
    RingCentralSender,
    TransientSendError,
    TwilioSender,
    build_senders,
)
from hibachi.settings import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, Settings
from telephony.fakes import FakeRingCentral, FakeTwilio
from telephony.sms_segments import count_segments

AGENT = "+16505550100"
CUSTOMER = "+14155550123"
RC_JWT = "eyJhbGciOiJSUzI1NiJ9.fake-user-credential.sig"
CALLBACK = "https://agent.test/twilio/status"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def twilio_server() -> Iterator[FakeTwilio]:
    with FakeTwilio(phone_numbers=[AGENT]) as fake:
        yield fake


@pytest.fixture
def twilio(twilio_server: FakeTwilio) -> FakeTwilio:
    twilio_server.reset()
    return twilio_server


@pytest.fixture
def twilio_sender(twilio: FakeTwilio) -> TwilioSender:
    return TwilioSender(
        account_sid=DEV_TWILIO_ACCOUNT_SID,
        auth_token=DEV_TWILIO_AUTH_TOKEN,
        api_base=twilio.base_url,
    )


@pytest.fixture(scope="module")
def rc_server() -> Iterator[FakeRingCentral]:
    with FakeRingCentral(jwt=RC_JWT, phone_numbers=[AGENT]) as fake:
        yield fake


@pytest.fixture
def rc(rc_server: FakeRingCentral) -> FakeRingCentral:
    rc_server.reset()
    return rc_server


def _rc_sender(rc: FakeRingCentral, *, jwt: str = RC_JWT) -> RingCentralSender:
    return RingCentralSender(
        server_url=rc.base_url, client_id=rc.client_id, client_secret=rc.client_secret, jwt=jwt
    )


@pytest.fixture
def rc_sender(rc: FakeRingCentral) -> RingCentralSender:
    return _rc_sender(rc)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- Twilio ----------------------------------------------------------------------------


async def test_twilio_text_reaches_the_fake_with_from_to_body_callback_and_basic_auth(
    twilio: FakeTwilio, twilio_sender: TwilioSender
) -> None:
    result = await twilio_sender.send(
        from_phone=AGENT, to_phone=CUSTOMER, body="Booking confirmed.", status_callback=CALLBACK
    )

    assert re.fullmatch(r"SM[0-9a-f]{32}", result.provider_message_id)
    assert (result.status, result.segments) == ("queued", 1)
    [message] = twilio.messages
    assert message["sid"] == result.provider_message_id
    assert (message["from"], message["to"], message["body"]) == (AGENT, CUSTOMER, "Booking confirmed.")
    assert message["direction"] == "outbound-api"
    assert message["status_callback"] == CALLBACK
    [request] = twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{DEV_TWILIO_ACCOUNT_SID}/Messages.json"
    assert request.headers["authorization"] == _basic(DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN)
    assert request.form == {
        "To": [CUSTOMER],
        "From": [AGENT],
        "Body": ["Booking confirmed."],
        "StatusCallback": [CALLBACK],
    }
    assert request.status == 201


async def test_twilio_without_status_callback_sends_no_callback_field(
    twilio: FakeTwilio, twilio_sender: TwilioSender
) -> None:
    await twilio_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="hi", status_callback=None)

    assert "StatusCallback" not in twilio.requests[0].form


async def test_twilio_unsubscribed_recipient_is_a_permanent_opt_out(
    twilio: FakeTwilio, twilio_sender: TwilioSender
) -> None:
    twilio.reject_to(CUSTOMER, code=21610)

    with pytest.raises(RecipientOptedOut) as caught:
        await twilio_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="hi", status_callback=None)

    assert isinstance(caught.value, PermanentSendError)
    assert (caught.value.code, caught.value.http_status) == ("21610", 400)
    assert "unsubscribed recipient" in str(caught.value)
    assert twilio.messages == []


async def test_twilio_invalid_number_is_permanent_but_not_an_opt_out(
    twilio_sender: TwilioSender,
) -> None:
    with pytest.raises(PermanentSendError) as caught:
        await twilio_sender.send(from_phone=AGENT, to_phone="555-0123", body="hi", status_callback=None)

    assert not isinstance(caught.value, RecipientOptedOut)
    assert caught.value.code == "21211"


async def test_twilio_wrong_credentials_are_permanent(twilio: FakeTwilio) -> None:
    sender = TwilioSender(account_sid=DEV_TWILIO_ACCOUNT_SID, auth_token="wrong", api_base=twilio.base_url)

    with pytest.raises(PermanentSendError) as caught:
        await sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="hi", status_callback=None)

    assert (caught.value.code, caught.value.http_status) == ("20003", 401)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_twilio_server_errors_and_throttling_are_transient(
    twilio: FakeTwilio, twilio_sender: TwilioSender, status: int
) -> None:
    twilio.fail_next(status=status)

    with pytest.raises(TransientSendError) as caught:
        await twilio_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="hi", status_callback=None)
    assert caught.value.http_status == status

    retried = await twilio_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="hi", status_callback=None)
    assert [m["sid"] for m in twilio.messages] == [retried.provider_message_id]


async def test_twilio_unreachable_is_transient() -> None:
    sender = TwilioSender(
        account_sid=DEV_TWILIO_ACCOUNT_SID,
        auth_token=DEV_TWILIO_AUTH_TOKEN,
        api_base=_closed_port_url(),
    )

    with pytest.raises(TransientSendError, match="unreachable"):
        await sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="hi", status_callback=None)


SEGMENT_CASES = [
    pytest.param("Booking confirmed.", 1, id="short-gsm7"),
    pytest.param("x" * 160, 1, id="gsm7-160"),
    pytest.param("x" * 161, 2, id="gsm7-161"),
    pytest.param("x" * 306, 2, id="gsm7-2x153"),
    pytest.param("x" * 307, 3, id="gsm7-307"),
    pytest.param("€" * 80, 1, id="gsm7-extension-chars-count-double"),
    pytest.param("€" * 81, 2, id="gsm7-extension-161-septets"),
    pytest.param("See you soon 😀", 1, id="emoji-short"),
    pytest.param("😀" * 35, 1, id="emoji-70-units"),
    pytest.param("x" * 69 + "😀", 2, id="emoji-71-units"),
    pytest.param("x" * 132 + "😀", 2, id="ucs2-2x67"),
    pytest.param("x" * 66 + "😀" + "x" * 66, 3, id="ucs2-surrogate-pair-not-split"),
    pytest.param("Don\u2019t forget", 1, id="curly-quote-is-ucs2"),
    pytest.param("Don\u2019t forget " + "x" * 60, 2, id="curly-quote-73-units"),
]


@pytest.mark.parametrize(("body", "segments"), SEGMENT_CASES)
async def test_segments_follow_gsm7_and_ucs2_rules(
    twilio: FakeTwilio, twilio_sender: TwilioSender, body: str, segments: int
) -> None:
    result = await twilio_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body=body, status_callback=None)

    assert result.segments == segments
    assert twilio.messages[0]["num_segments"] == str(segments)
    assert count_segments(body) == segments  # the local count RingCentral sends rely on


# -- RingCentral -----------------------------------------------------------------------


async def test_ringcentral_text_reaches_the_fake_after_a_jwt_login(
    rc: FakeRingCentral, rc_sender: RingCentralSender
) -> None:
    result = await rc_sender.send(
        from_phone=AGENT, to_phone=CUSTOMER, body="Booking confirmed 😀", status_callback=CALLBACK
    )

    [message] = rc.messages
    assert result.provider_message_id == str(message["id"])
    assert isinstance(message["id"], int)  # a JSON number on the wire, a str for us
    assert (result.status, result.segments) == ("Queued", 1)
    assert message["from"]["phoneNumber"] == AGENT
    assert message["to"] == [{"phoneNumber": CUSTOMER}]
    assert message["subject"] == "Booking confirmed 😀"
    [token_request] = rc.token_requests
    assert token_request == {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": RC_JWT,
    }
    login, send = rc.requests
    assert login.headers["authorization"] == _basic(rc.client_id, rc.client_secret)
    assert send.path == "/restapi/v1.0/account/~/extension/~/sms"
    assert send.headers["authorization"].startswith("bearer ")
    assert send.json == {
        "from": {"phoneNumber": AGENT},
        "to": [{"phoneNumber": CUSTOMER}],
        "text": "Booking confirmed 😀",
    }


async def test_ringcentral_logs_in_once_and_reuses_the_token(
    rc: FakeRingCentral, rc_sender: RingCentralSender
) -> None:
    for body in ("one", "two", "three"):
        await rc_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body=body, status_callback=None)

    assert len(rc.token_requests) == 1
    sms_auth = {r.headers["authorization"] for r in rc.requests if r.path.endswith("/sms")}
    assert len(sms_auth) == 1
    assert [m["subject"] for m in rc.messages] == ["one", "two", "three"]


async def test_ringcentral_concurrent_first_sends_share_one_login(
    rc: FakeRingCentral, rc_sender: RingCentralSender
) -> None:
    await asyncio.gather(
        *(
            rc_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body=f"n{i}", status_callback=None)
            for i in range(5)
        )
    )

    assert len(rc.token_requests) == 1
    assert len(rc.messages) == 5


async def test_ringcentral_token_rejected_by_server_logs_in_again_and_sends(
    rc: FakeRingCentral, rc_sender: RingCentralSender
) -> None:
    await rc_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="one", status_callback=None)
    rc.expire_access_tokens()

    await rc_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="two", status_callback=None)

    assert [r["grant_type"] for r in rc.token_requests] == [
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ]
    assert [m["subject"] for m in rc.messages] == ["one", "two"]


@pytest.mark.parametrize("status", [503, 500, 429])
async def test_ringcentral_server_errors_and_throttling_are_transient(
    rc: FakeRingCentral, rc_sender: RingCentralSender, status: int
) -> None:
    rc.fail_next(status=status)

    with pytest.raises(TransientSendError) as caught:
        await rc_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="hi", status_callback=None)

    assert caught.value.http_status == status
    await rc_sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="hi", status_callback=None)
    assert len(rc.messages) == 1


async def test_ringcentral_number_not_owned_by_the_extension_is_permanent(
    rc: FakeRingCentral, rc_sender: RingCentralSender
) -> None:
    with pytest.raises(PermanentSendError) as caught:
        await rc_sender.send(from_phone="+16505550199", to_phone=CUSTOMER, body="hi", status_callback=None)

    assert (caught.value.http_status, caught.value.code) == (403, "MSG-242")
    assert rc.messages == []


async def test_ringcentral_bad_jwt_is_permanent_and_leaks_no_credentials(
    rc: FakeRingCentral,
) -> None:
    sender = _rc_sender(rc, jwt="not-the-credential")

    with pytest.raises(PermanentSendError) as caught:
        await sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="hi", status_callback=None)

    assert caught.value.http_status == 400
    assert "not-the-credential" not in str(caught.value)
    assert rc.client_secret not in str(caught.value)
    assert "Basic" not in str(caught.value)


async def test_ringcentral_unreachable_is_transient() -> None:
    sender = RingCentralSender(
        server_url=_closed_port_url(), client_id="id", client_secret="secret", jwt=RC_JWT
    )

    with pytest.raises(TransientSendError, match="unreachable"):
        await sender.send(from_phone=AGENT, to_phone=CUSTOMER, body="hi", status_callback=None)


def test_fake_ringcentral_refresh_grant_rotates_tokens_and_lists_sms_numbers(
    rc: FakeRingCentral,
) -> None:
    platform = SDK(rc.client_id, rc.client_secret, rc.base_url).platform()
    platform.login(jwt=RC_JWT)
    first_refresh = platform.auth().refresh_token()

    platform.refresh()

    assert platform.auth().refresh_token() != first_refresh
    assert rc.token_requests[-1]["grant_type"] == "refresh_token"
    assert rc.token_requests[-1]["refresh_token"] == first_refresh
    numbers = platform.get("/restapi/v1.0/account/~/extension/~/phone-number").json_dict()
    [record] = numbers["records"]
    assert record["phoneNumber"] == AGENT
    assert "SmsSender" in record["features"]


# -- wiring ------------------------------------------------------------------------------


def test_unconfigured_providers_log_texts_instead_of_sending() -> None:
    senders = build_senders(Settings(_env_file=None))
    assert {name: type(sender) for name, sender in senders.items()} == {
        "twilio": LogSender,
        "ringcentral": LogSender,
    }


async def test_log_sender_records_a_text_without_a_provider() -> None:
    result = await LogSender("twilio").send(
        from_phone=AGENT, to_phone="+14085550123", body="hello", status_callback=None
    )
    assert result.provider_message_id.startswith("log-")
    assert result.segments == 1


def test_build_senders_uses_the_real_clients_when_configured() -> None:

    both = build_senders(
        Settings(
            _env_file=None,
            twilio_api_base="http://127.0.0.1:1",
            ringcentral_server_url="http://127.0.0.1:1",
            ringcentral_client_id="id",
            ringcentral_client_secret="secret",
            ringcentral_jwt=RC_JWT,
        )
    )
    assert {name: type(sender) for name, sender in both.items()} == {
        "twilio": TwilioSender,
        "ringcentral": RingCentralSender,
    }
    assert {name: sender.provider for name, sender in both.items()} == {
        "twilio": "twilio",
        "ringcentral": "ringcentral",
    }


def test_build_senders_refuses_a_half_configured_ringcentral() -> None:
    settings = Settings(
        _env_file=None,
        ringcentral_server_url="http://127.0.0.1:1",
        ringcentral_client_id="id",
    )

    with pytest.raises(ValueError, match="RINGCENTRAL_JWT"):
        build_senders(settings)
