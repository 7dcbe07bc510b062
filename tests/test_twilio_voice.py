"""`POST /twilio/voice` answers signed calls with `<Connect><Stream>`; call control through the SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from xml.etree import ElementTree

import httpx
import pytest
from fastapi import FastAPI
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client as TwilioClient

from hibachi.app import install_error_handlers
from hibachi.settings import Settings
from telephony.fakes import FakeTwilio
from telephony.twilio import calls, voice
from telephony.twilio.call_sim import voice_webhook_form
from telephony.twilio.signature import SIGNATURE_HEADER, sign

PUBLIC = "https://agent.test"
CALL_SID = "CA0123456789abcdef0123456789abcdef"
CALLER = "+14085550123"
AGENT = "+14085550199"


def voice_app(settings: Settings) -> FastAPI:
    """Just the voice webhook, with the app's error rendering and our settings."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(voice.router)
    app.dependency_overrides[voice.get_settings] = lambda: settings
    return app


@pytest.fixture
def voice_settings(fake_twilio: FakeTwilio) -> Settings:
    return Settings(_env_file=None, public_base_url=PUBLIC, twilio_api_base=fake_twilio.base_url)


@pytest.fixture
async def twilio(voice_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=voice_app(voice_settings))
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as client:
        yield client


def form(**overrides: str) -> dict[str, str]:
    fields = voice_webhook_form(
        call_sid=CALL_SID, account_sid="AC" + "0" * 32, from_phone=CALLER, to_phone=AGENT
    )
    fields.update(overrides)
    return fields


async def post_signed(
    client: httpx.AsyncClient,
    settings: Settings,
    fields: dict[str, str],
    *,
    url: str = PUBLIC + "/twilio/voice",
) -> httpx.Response:
    signature = sign(url, fields, settings.twilio_auth_token)
    return await client.post("/twilio/voice", data=fields, headers={SIGNATURE_HEADER: signature})


async def test_signed_call_is_connected_to_the_media_stream(
    twilio: httpx.AsyncClient, voice_settings: Settings
) -> None:
    response = await post_signed(twilio, voice_settings, form())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    root = ElementTree.fromstring(response.text)
    assert root.tag == "Response"
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "wss://agent.test/twilio/media"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters == {
        "from": CALLER,
        "to": AGENT,
        "call_sid": CALL_SID,
        "token": voice.stream_token(voice_settings, CALL_SID),
    }
    assert voice.verify_stream_token(voice_settings, CALL_SID, parameters["token"])


async def test_unsigned_call_is_forbidden(twilio: httpx.AsyncClient) -> None:
    response = await twilio.post("/twilio/voice", data=form())
    assert response.status_code == 403
    assert response.json()["error"] == "InvalidSignature"


async def test_call_signed_for_another_url_is_forbidden(
    twilio: httpx.AsyncClient, voice_settings: Settings
) -> None:
    response = await post_signed(twilio, voice_settings, form(), url="http://127.0.0.1:8000/twilio/voice")
    assert response.status_code == 403


async def test_tampered_form_is_forbidden(twilio: httpx.AsyncClient, voice_settings: Settings) -> None:
    signature = sign(PUBLIC + "/twilio/voice", form(), voice_settings.twilio_auth_token)
    response = await twilio.post(
        "/twilio/voice", data=form(From="+14155550000"), headers={SIGNATURE_HEADER: signature}
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "overrides",
    [{"CallSid": ""}, {"CallSid": "SM0123456789abcdef0123456789abcdef"}, {"From": ""}, {"To": ""}],
)
async def test_call_without_valid_sid_or_numbers_is_rejected(
    twilio: httpx.AsyncClient, voice_settings: Settings, overrides: dict[str, str]
) -> None:
    response = await post_signed(twilio, voice_settings, form(**overrides))
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidCallWebhook"


async def test_callers_that_are_not_phone_numbers_are_passed_through(
    twilio: httpx.AsyncClient, voice_settings: Settings
) -> None:
    response = await post_signed(twilio, voice_settings, form(From="client:alice", To="(408) 555-0199"))
    stream = ElementTree.fromstring(response.text).find("./Connect/Stream")
    assert stream is not None
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters["from"] == "client:alice"
    assert parameters["to"] == AGENT


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://agent.test", "wss://agent.test/twilio/media"),
        ("https://agent.test/", "wss://agent.test/twilio/media"),
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/twilio/media"),
        ("https://example.com:8443/hibachi", "wss://example.com:8443/hibachi/twilio/media"),
    ],
)
def test_stream_url_follows_public_base_url(base: str, url: str) -> None:
    assert voice.stream_url(Settings(_env_file=None, public_base_url=base)) == url


def test_stream_token_is_per_call_and_per_auth_token() -> None:
    settings = Settings(_env_file=None, twilio_auth_token="secret-a")
    token = voice.stream_token(settings, CALL_SID)
    assert len(token) == 64
    assert voice.verify_stream_token(settings, CALL_SID, token)
    assert not voice.verify_stream_token(settings, "CA" + "f" * 32, token)
    assert not voice.verify_stream_token(
        Settings(_env_file=None, twilio_auth_token="secret-b"), CALL_SID, token
    )
    assert not voice.verify_stream_token(settings, CALL_SID, "")
    assert not voice.verify_stream_token(settings, CALL_SID, None)


def test_stream_handshake_signature_covers_the_wss_url_without_params() -> None:
    settings = Settings(_env_file=None, public_base_url=PUBLIC)
    good = sign("wss://agent.test/twilio/media", {}, settings.twilio_auth_token)
    assert voice.verify_stream_signature(settings, good)
    assert not voice.verify_stream_signature(settings, sign("wss://other.test/twilio/media", {}, "x"))
    assert not voice.verify_stream_signature(settings, None)


# -- call control through the real SDK ------------------------------------------------------


def dial(twiml: str) -> ElementTree.Element:
    element = ElementTree.fromstring(twiml).find("./Dial")
    assert element is not None
    return element


async def test_transfer_redirects_the_live_call_to_a_dial(
    voice_settings: Settings, fake_twilio: FakeTwilio
) -> None:
    await calls.transfer_call(voice_settings, call_sid=CALL_SID, to_phone="+14085550100", caller_id=AGENT)
    [update] = fake_twilio.call_updates
    assert update["call_sid"] == CALL_SID
    assert set(update) == {"call_sid", "Twiml"}
    element = dial(update["Twiml"])
    assert element.attrib == {"callerId": AGENT, "answerOnBridge": "true", "timeout": "20"}
    assert [n.text for n in element.findall("Number")] == ["+14085550100"]
    [request] = fake_twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{voice_settings.twilio_account_sid}/Calls/{CALL_SID}.json"
    assert request.status == 200
    assert request.headers["authorization"].startswith("Basic ")


async def test_hang_up_completes_the_call(voice_settings: Settings, fake_twilio: FakeTwilio) -> None:
    await calls.hang_up(voice_settings, call_sid=CALL_SID)
    assert fake_twilio.call_updates == [{"call_sid": CALL_SID, "Status": "completed"}]


async def test_control_of_an_ended_call_raises_call_ended(
    voice_settings: Settings, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.end_call(CALL_SID)
    with pytest.raises(calls.CallEnded) as raised:
        await calls.transfer_call(voice_settings, call_sid=CALL_SID, to_phone="+14085550100", caller_id=AGENT)
    assert raised.value.code == calls.TWILIO_CALL_NOT_IN_PROGRESS
    assert not raised.value.retryable
    assert fake_twilio.call_updates == []


async def test_one_client_can_transfer_after_a_failed_hang_up(
    voice_settings: Settings, fake_twilio: FakeTwilio
) -> None:
    async with calls.TwilioCallControl.from_settings(voice_settings) as control:
        await control.hang_up(call_sid=CALL_SID)
        with pytest.raises(calls.CallEnded):
            await control.hang_up(call_sid=CALL_SID)
        await control.transfer(call_sid="CA" + "1" * 32, to_phone="+14085550100", caller_id=AGENT)
    assert [u["call_sid"] for u in fake_twilio.call_updates] == [CALL_SID, "CA" + "1" * 32]


async def test_bad_credentials_are_a_permanent_error(fake_twilio: FakeTwilio) -> None:
    settings = Settings(_env_file=None, twilio_api_base=fake_twilio.base_url, twilio_auth_token="wrong")
    with pytest.raises(calls.CallControlError) as raised:
        await calls.hang_up(settings, call_sid=CALL_SID)
    assert type(raised.value) is calls.CallControlError
    assert (raised.value.code, raised.value.http_status) == (20003, 401)
    assert not raised.value.retryable


async def test_unreachable_twilio_is_retryable() -> None:
    settings = Settings(_env_file=None, twilio_api_base="http://127.0.0.1:9")
    with pytest.raises(calls.CallControlUnavailable) as raised:
        await calls.hang_up(settings, call_sid=CALL_SID)
    assert raised.value.retryable


def test_fake_accepts_only_the_documented_update_statuses(fake_twilio: FakeTwilio) -> None:
    client = TwilioClient(fake_twilio.account_sid, fake_twilio.auth_token)
    client.api.base_url = fake_twilio.base_url
    with pytest.raises(TwilioRestException) as raised:
        client.calls(CALL_SID).update(status="ringing")
    assert raised.value.code == 21218
    assert client.calls(CALL_SID).update(status="canceled").status == "canceled"
    assert fake_twilio.call_updates == [{"call_sid": CALL_SID, "Status": "canceled"}]
