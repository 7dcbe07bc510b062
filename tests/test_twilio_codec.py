"""Media Streams codec: the documented messages both ways, round trips, and every malformed case."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from telephony.audio import SILENT_FRAME
from telephony.twilio import codec

STREAM = "MZ11112222333344445555666677778888"
CALL = "CA0123456789abcdef0123456789abcdef"
ACCOUNT = "ACfedcba9876543210fedcba9876543210"
SILENT_B64 = base64.b64encode(SILENT_FRAME).decode()

# Verbatim shapes from protocols.md 1.3 (Twilio's docs and a real capture).
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": ACCOUNT,
        "streamSid": STREAM,
        "callSid": CALL,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"tenant": "acme", "session": "sess_8841"},
    },
    "streamSid": STREAM,
}
MEDIA = {
    "event": "media",
    "sequenceNumber": "2",
    "media": {"track": "inbound", "chunk": "1", "timestamp": "52", "payload": SILENT_B64},
    "streamSid": STREAM,
}
DTMF = {
    "event": "dtmf",
    "streamSid": STREAM,
    "sequenceNumber": "57",
    "dtmf": {"track": "inbound_track", "digit": "5"},
}
MARK = {"event": "mark", "sequenceNumber": "103", "streamSid": STREAM, "mark": {"name": "utt-7"}}
STOP = {
    "event": "stop",
    "sequenceNumber": "904",
    "streamSid": STREAM,
    "stop": {"accountSid": ACCOUNT, "callSid": CALL},
}


def test_connected_is_parsed() -> None:
    event = codec.parse('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
    assert event == codec.Connected(protocol="Call", version="1.0.0")


def test_start_carries_sids_format_and_custom_parameters() -> None:
    event = codec.parse(json.dumps(START))
    assert event == codec.Start(
        stream_sid=STREAM,
        call_sid=CALL,
        account_sid=ACCOUNT,
        tracks=("inbound",),
        media_format=codec.MediaFormat("audio/x-mulaw", 8000, 1),
        custom_parameters={"tenant": "acme", "session": "sess_8841"},
        sequence_number=1,
    )


def test_media_numbers_arrive_as_strings_and_payload_is_decoded() -> None:
    event = codec.parse(json.dumps(MEDIA))
    assert event == codec.Media(
        chunk=1, timestamp_ms=52, payload=SILENT_FRAME, track="inbound", stream_sid=STREAM, sequence_number=2
    )


def test_dtmf_mark_and_stop_are_parsed() -> None:
    assert codec.parse(json.dumps(DTMF)) == codec.Dtmf("5", "inbound_track", STREAM, 57)
    assert codec.parse(json.dumps(MARK)) == codec.Mark("utt-7", STREAM, 103)
    assert codec.parse(json.dumps(STOP)) == codec.Stop(CALL, ACCOUNT, STREAM, 904)


def test_parse_accepts_bytes() -> None:
    assert codec.parse(json.dumps(MARK).encode()) == codec.Mark("utt-7", STREAM, 103)


def test_outbound_messages_have_the_documented_shape() -> None:
    assert json.loads(codec.media_message(STREAM, SILENT_FRAME)) == {
        "event": "media",
        "streamSid": STREAM,
        "media": {"payload": SILENT_B64},
    }
    assert len(json.loads(codec.media_message(STREAM, SILENT_FRAME))["media"]["payload"]) == 216
    assert json.loads(codec.mark_message(STREAM, "utt-7")) == {
        "event": "mark",
        "streamSid": STREAM,
        "mark": {"name": "utt-7"},
    }
    assert json.loads(codec.clear_message(STREAM)) == {"event": "clear", "streamSid": STREAM}


def test_twilio_side_builders_produce_the_documented_messages() -> None:
    assert json.loads(codec.connected_message()) == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }
    start = codec.start_message(
        stream_sid=STREAM,
        call_sid=CALL,
        account_sid=ACCOUNT,
        custom_parameters={"tenant": "acme", "session": "sess_8841"},
    )
    assert json.loads(start) == START
    media = codec.media_event_message(
        stream_sid=STREAM, sequence_number=2, chunk=1, timestamp_ms=52, payload=SILENT_FRAME
    )
    assert json.loads(media) == MEDIA
    assert json.loads(codec.dtmf_message(stream_sid=STREAM, sequence_number=57, digit="5")) == DTMF
    assert json.loads(codec.mark_event_message(stream_sid=STREAM, sequence_number=103, name="utt-7")) == MARK
    stop = codec.stop_message(stream_sid=STREAM, sequence_number=904, account_sid=ACCOUNT, call_sid=CALL)
    assert json.loads(stop) == STOP


def test_twilio_side_messages_round_trip_through_parse() -> None:
    payload = bytes(range(256)) * 3  # any length, every byte value
    media = codec.media_event_message(
        stream_sid=STREAM, sequence_number=9, chunk=8, timestamp_ms=160, payload=payload
    )
    assert codec.parse(media) == codec.Media(8, 160, payload, "inbound", STREAM, 9)
    assert codec.parse(codec.dtmf_message(stream_sid=STREAM, sequence_number=3, digit="#")) == codec.Dtmf(
        "#", "inbound_track", STREAM, 3
    )
    assert isinstance(codec.parse(codec.connected_message()), codec.Connected)


def test_our_messages_round_trip_through_parse_outbound() -> None:
    payload = bytes(range(256)) * 40  # larger than a frame: any whole number of bytes is allowed
    assert codec.parse_outbound(codec.media_message(STREAM, payload)) == codec.OutMedia(STREAM, payload)
    assert codec.parse_outbound(codec.mark_message(STREAM, "m1")) == codec.OutMark(STREAM, "m1")
    assert codec.parse_outbound(codec.clear_message(STREAM)) == codec.OutClear(STREAM)


def _with(base: dict[str, Any], path: tuple[str, ...], value: Any) -> str:
    message = json.loads(json.dumps(base))
    target = message
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(message)


_DELETE = object()

MALFORMED = [
    pytest.param("not json", "not JSON", id="not-json"),
    pytest.param("[1, 2]", "JSON object", id="array"),
    pytest.param('{"streamSid": "MZ1"}', "missing 'event'", id="no-event"),
    pytest.param('{"event": 5}', "missing 'event'", id="event-not-string"),
    pytest.param('{"event": "hangup"}', "unknown event 'hangup'", id="unknown-event"),
    pytest.param(_with(MEDIA, ("media",), _DELETE), "missing object 'media'", id="media-no-body"),
    pytest.param(_with(MEDIA, ("media", "payload"), _DELETE), "missing string 'payload'", id="no-payload"),
    pytest.param(_with(MEDIA, ("media", "payload"), "***"), "not valid base64", id="bad-base64"),
    pytest.param(_with(MEDIA, ("media", "payload"), "//8"), "not valid base64", id="base64-padding"),
    pytest.param(
        _with(MEDIA, ("media", "chunk"), "one"), "'chunk' must be a string of digits", id="chunk-word"
    ),
    pytest.param(
        _with(MEDIA, ("media", "chunk"), "-1"), "'chunk' must be a string of digits", id="chunk-neg"
    ),
    pytest.param(_with(MEDIA, ("media", "timestamp"), _DELETE), "'timestamp'", id="no-timestamp"),
    pytest.param(_with(MEDIA, ("media", "timestamp"), 1.5), "'timestamp'", id="timestamp-float"),
    pytest.param(_with(MEDIA, ("sequenceNumber",), "x"), "'sequenceNumber'", id="bad-sequence"),
    pytest.param(_with(MEDIA, ("streamSid",), _DELETE), "missing string 'streamSid'", id="media-no-stream"),
    pytest.param(_with(START, ("start",), _DELETE), "missing object 'start'", id="start-no-body"),
    pytest.param(_with(START, ("start", "callSid"), _DELETE), "missing string 'callSid'", id="start-no-call"),
    pytest.param(_with(START, ("start", "accountSid"), 7), "missing string 'accountSid'", id="start-acct"),
    pytest.param(_with(START, ("start", "mediaFormat"), _DELETE), "'mediaFormat'", id="start-no-format"),
    pytest.param(
        _with(START, ("start", "mediaFormat", "sampleRate"), "8000"),
        "'sampleRate' must be an integer",
        id="rate",
    ),
    pytest.param(_with(START, ("start", "tracks"), "inbound"), "'tracks'", id="tracks-string"),
    pytest.param(_with(START, ("start", "customParameters"), {"a": 1}), "'customParameters'", id="params"),
    pytest.param(_with(DTMF, ("dtmf", "digit"), "55"), "not a DTMF digit", id="dtmf-two"),
    pytest.param(_with(DTMF, ("dtmf", "digit"), "x"), "not a DTMF digit", id="dtmf-letter"),
    pytest.param(_with(DTMF, ("dtmf",), _DELETE), "missing object 'dtmf'", id="dtmf-no-body"),
    pytest.param(_with(MARK, ("mark", "name"), _DELETE), "missing string 'name'", id="mark-no-name"),
    pytest.param(_with(STOP, ("stop", "callSid"), _DELETE), "missing string 'callSid'", id="stop-no-call"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_messages_raise_codec_error(text: str, message: str) -> None:
    with pytest.raises(codec.CodecError, match=message):
        codec.parse(text)


def test_plain_json_integers_are_tolerated_for_string_numbers() -> None:
    event = codec.parse(_with(MEDIA, ("media", "chunk"), 3))
    assert isinstance(event, codec.Media)
    assert event.chunk == 3


def test_boolean_is_not_a_number() -> None:
    with pytest.raises(codec.CodecError, match="'chunk'"):
        codec.parse(_with(MEDIA, ("media", "chunk"), True))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('{"event": "connected"}', "not a message a server may send", id="connected"),
        pytest.param('{"event": "start", "streamSid": "MZ1"}', "not a message a server may send", id="start"),
        pytest.param('{"event": "media", "streamSid": "MZ1"}', "missing object 'media'", id="no-media"),
        pytest.param(
            '{"event": "media", "streamSid": "MZ1", "media": {"payload": "!"}}', "base64", id="bad-payload"
        ),
        pytest.param('{"event": "mark", "streamSid": "MZ1", "mark": {}}', "'name'", id="mark-no-name"),
        pytest.param('{"event": "clear"}', "'streamSid'", id="clear-no-stream"),
        pytest.param("{", "not JSON", id="not-json"),
    ],
)
def test_malformed_outbound_messages_raise_codec_error(text: str, message: str) -> None:
    with pytest.raises(codec.CodecError, match=message):
        codec.parse_outbound(text)
