"""Twilio Media Streams messages <-> typed events, as pure functions (protocols.md 1.3, 1.4).

Inbound (Twilio -> us): `parse(text)` returns one of `Connected`, `Start`, `Media`,
`Dtmf`, `Mark`, `Stop`, or raises `CodecError`. Outbound (us -> Twilio):
`media_message`, `mark_message`, `clear_message` build the JSON text frames.

The reverse direction is here too, for the call simulator that plays Twilio:
`connected_message`, `start_message`, `media_event_message`, `dtmf_message`,
`mark_event_message`, `stop_message` build what Twilio sends, and `parse_outbound`
reads what we send (`OutMedia`, `OutMark`, `OutClear`).

Wire quirks kept exactly: `sequenceNumber`, `media.chunk` and `media.timestamp` are
strings of digits; `mediaFormat.sampleRate` and `channels` are integers; `dtmf.track`
is `inbound_track` while `media.track` is `inbound`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

PROTOCOL = "Call"
PROTOCOL_VERSION = "1.0.0"
ULAW_ENCODING = "audio/x-mulaw"


class CodecError(ValueError):
    """A Media Streams message that is not valid JSON or not the documented shape."""


# -- events Twilio sends ---------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class MediaFormat:
    encoding: str = ULAW_ENCODING
    sample_rate: int = 8000
    channels: int = 1


@dataclass(slots=True, frozen=True)
class Connected:
    """First message on the socket; carries no stream sid."""

    protocol: str = PROTOCOL
    version: str = PROTOCOL_VERSION


@dataclass(slots=True, frozen=True)
class Start:
    """The stream's metadata; `custom_parameters` are the TwiML `<Parameter>`s."""

    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...] = ("inbound",)
    media_format: MediaFormat = field(default_factory=MediaFormat)
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    sequence_number: int = 0


@dataclass(slots=True)  # not frozen: 50 a second per call, and a frozen one takes 3x as long to build
class Media:
    """20 ms of caller audio: `payload` is raw mu-law (already base64-decoded)."""

    chunk: int
    timestamp_ms: int
    payload: bytes
    track: str = "inbound"
    stream_sid: str = ""
    sequence_number: int = 0


@dataclass(slots=True, frozen=True)
class Dtmf:
    """One key the caller pressed."""

    digit: str
    track: str = "inbound_track"
    stream_sid: str = ""
    sequence_number: int = 0


@dataclass(slots=True, frozen=True)
class Mark:
    """Playback reached a mark we sent (or a `clear` flushed it)."""

    name: str
    stream_sid: str = ""
    sequence_number: int = 0


@dataclass(slots=True, frozen=True)
class Stop:
    """The stream ended: the caller hung up or the call was redirected."""

    call_sid: str
    account_sid: str = ""
    stream_sid: str = ""
    sequence_number: int = 0


InboundEvent = Connected | Start | Media | Dtmf | Mark | Stop


# -- messages we send ------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class OutMedia:
    stream_sid: str
    payload: bytes


@dataclass(slots=True, frozen=True)
class OutMark:
    stream_sid: str
    name: str


@dataclass(slots=True, frozen=True)
class OutClear:
    stream_sid: str


OutboundMessage = OutMedia | OutMark | OutClear


# -- field readers ---------------------------------------------------------------------


def _load(text: str | bytes) -> tuple[str, dict[str, Any]]:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as exc:  # also raised for invalid UTF-8
        raise CodecError(f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise CodecError(f"expected a JSON object, got {type(message).__name__}")
    event = message.get("event")
    if not isinstance(event, str):
        raise CodecError("missing 'event'")
    return event, message


def _object(parent: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise CodecError(f"{where}: missing object '{key}'")
    return value


def _str(parent: Mapping[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str):
        raise CodecError(f"{where}: missing string '{key}'")
    return value


def _digits(parent: Mapping[str, Any], key: str, where: str) -> int:
    """A number Twilio sends as a string of digits (a plain JSON integer is tolerated)."""
    value = parent.get(key)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise CodecError(f"{where}: '{key}' must be a string of digits, got {value!r}")


def _int(parent: Mapping[str, Any], key: str, where: str) -> int:
    value = parent.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise CodecError(f"{where}: '{key}' must be an integer, got {value!r}")


def _payload(parent: Mapping[str, Any], where: str) -> bytes:
    encoded = _str(parent, "payload", where)
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise CodecError(f"{where}: payload is not valid base64: {exc}") from exc


def _sequence(message: Mapping[str, Any], event: str) -> int:
    return _digits(message, "sequenceNumber", event)


# -- parse what Twilio sends -----------------------------------------------------------


def _parse_connected(message: dict[str, Any]) -> Connected:
    return Connected(
        protocol=str(message.get("protocol", PROTOCOL)), version=str(message.get("version", PROTOCOL_VERSION))
    )


def _parse_start(message: dict[str, Any]) -> Start:
    start = _object(message, "start", "start")
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise CodecError("start: 'tracks' must be a list of strings")
    fmt = _object(start, "mediaFormat", "start")
    params = start.get("customParameters", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise CodecError("start: 'customParameters' must be an object of strings")
    return Start(
        stream_sid=_str(message, "streamSid", "start"),
        call_sid=_str(start, "callSid", "start"),
        account_sid=_str(start, "accountSid", "start"),
        tracks=tuple(tracks),
        media_format=MediaFormat(
            encoding=_str(fmt, "encoding", "start.mediaFormat"),
            sample_rate=_int(fmt, "sampleRate", "start.mediaFormat"),
            channels=_int(fmt, "channels", "start.mediaFormat"),
        ),
        custom_parameters=params,
        sequence_number=_sequence(message, "start"),
    )


def _parse_media(message: dict[str, Any]) -> Media:
    media = _object(message, "media", "media")
    return Media(
        chunk=_digits(media, "chunk", "media"),
        timestamp_ms=_digits(media, "timestamp", "media"),
        payload=_payload(media, "media"),
        track=str(media.get("track", "inbound")),
        stream_sid=_str(message, "streamSid", "media"),
        sequence_number=_sequence(message, "media"),
    )


def _parse_dtmf(message: dict[str, Any]) -> Dtmf:
    dtmf = _object(message, "dtmf", "dtmf")
    digit = _str(dtmf, "digit", "dtmf")
    if len(digit) != 1 or digit not in "0123456789*#ABCD":
        raise CodecError(f"dtmf: {digit!r} is not a DTMF digit")
    return Dtmf(
        digit=digit,
        track=str(dtmf.get("track", "inbound_track")),
        stream_sid=_str(message, "streamSid", "dtmf"),
        sequence_number=_sequence(message, "dtmf"),
    )


def _parse_mark(message: dict[str, Any]) -> Mark:
    mark = _object(message, "mark", "mark")
    return Mark(
        name=_str(mark, "name", "mark"),
        stream_sid=_str(message, "streamSid", "mark"),
        sequence_number=_sequence(message, "mark"),
    )


def _parse_stop(message: dict[str, Any]) -> Stop:
    stop = _object(message, "stop", "stop")
    return Stop(
        call_sid=_str(stop, "callSid", "stop"),
        account_sid=str(stop.get("accountSid", "")),
        stream_sid=_str(message, "streamSid", "stop"),
        sequence_number=_sequence(message, "stop"),
    )


_INBOUND: dict[str, Callable[[dict[str, Any]], InboundEvent]] = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "stop": _parse_stop,
}


def parse(text: str | bytes) -> InboundEvent:
    """One Media Streams message from Twilio as an event; `CodecError` if it is malformed."""
    event, message = _load(text)
    parser = _INBOUND.get(event)
    if parser is None:
        raise CodecError(f"unknown event {event!r}")
    return parser(message)


# -- build what we send ----------------------------------------------------------------


def _dumps(message: Mapping[str, Any]) -> str:
    return orjson.dumps(message).decode()


def media_message(stream_sid: str, ulaw: bytes) -> str:
    """Queue raw mu-law audio (any whole number of bytes) for playback to the caller."""
    payload = base64.b64encode(ulaw).decode("ascii")
    return _dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    """Ask Twilio to echo `name` back once the audio queued before it has played."""
    return _dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    """Drop all queued outbound audio (barge-in); pending marks come back at once."""
    return _dumps({"event": "clear", "streamSid": stream_sid})


# -- the simulator side: build what Twilio sends ---------------------------------------


def connected_message() -> str:
    return _dumps({"event": "connected", "protocol": PROTOCOL, "version": PROTOCOL_VERSION})


def start_message(
    *,
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    custom_parameters: Mapping[str, str],
    sequence_number: int = 1,
    tracks: Iterable[str] = ("inbound",),
    media_format: MediaFormat = MediaFormat(),  # frozen, so one shared default is safe
) -> str:
    return _dumps(
        {
            "event": "start",
            "sequenceNumber": str(sequence_number),
            "start": {
                "accountSid": account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": list(tracks),
                "mediaFormat": {
                    "encoding": media_format.encoding,
                    "sampleRate": media_format.sample_rate,
                    "channels": media_format.channels,
                },
                "customParameters": dict(custom_parameters),
            },
            "streamSid": stream_sid,
        }
    )


def media_event_message(
    *,
    stream_sid: str,
    sequence_number: int,
    chunk: int,
    timestamp_ms: int,
    payload: bytes,
    track: str = "inbound",
) -> str:
    return _dumps(
        {
            "event": "media",
            "sequenceNumber": str(sequence_number),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(payload).decode("ascii"),
            },
            "streamSid": stream_sid,
        }
    )


def dtmf_message(*, stream_sid: str, sequence_number: int, digit: str) -> str:
    return _dumps(
        {
            "event": "dtmf",
            "streamSid": stream_sid,
            "sequenceNumber": str(sequence_number),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def mark_event_message(*, stream_sid: str, sequence_number: int, name: str) -> str:
    return _dumps(
        {
            "event": "mark",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "mark": {"name": name},
        }
    )


def stop_message(*, stream_sid: str, sequence_number: int, account_sid: str, call_sid: str) -> str:
    return _dumps(
        {
            "event": "stop",
            "sequenceNumber": str(sequence_number),
            "streamSid": stream_sid,
            "stop": {"accountSid": account_sid, "callSid": call_sid},
        }
    )


# -- the simulator side: parse what we send --------------------------------------------


def _parse_out_media(message: dict[str, Any]) -> OutMedia:
    return OutMedia(
        stream_sid=_str(message, "streamSid", "media"),
        payload=_payload(_object(message, "media", "media"), "media"),
    )


def _parse_out_mark(message: dict[str, Any]) -> OutMark:
    return OutMark(
        stream_sid=_str(message, "streamSid", "mark"),
        name=_str(_object(message, "mark", "mark"), "name", "mark"),
    )


def _parse_out_clear(message: dict[str, Any]) -> OutClear:
    return OutClear(stream_sid=_str(message, "streamSid", "clear"))


_OUTBOUND: dict[str, Callable[[dict[str, Any]], OutboundMessage]] = {
    "media": _parse_out_media,
    "mark": _parse_out_mark,
    "clear": _parse_out_clear,
}


def parse_outbound(text: str | bytes) -> OutboundMessage:
    """One message our server sent to Twilio; `CodecError` if Twilio would reject it."""
    event, message = _load(text)
    parser = _OUTBOUND.get(event)
    if parser is None:
        raise CodecError(f"{event!r} is not a message a server may send to Twilio")
    return parser(message)
