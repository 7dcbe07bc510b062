"""Telephony-session notifications (protocols.md section 4.6) -> small typed events.

Pure functions: no I/O. One notification carries the whole session's parties at one
`sequence`; events can repeat or arrive out of order, so consumers order by `sequence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TELEPHONY_SESSIONS = "/telephony/sessions"

RINGING = frozenset({"Setup", "Proceeding"})
ENDED = frozenset({"Disconnected", "Gone"})


class InvalidSessionEvent(ValueError):
    """A telephony-session notification without the fields Call Control needs."""


@dataclass(slots=True, frozen=True)
class Party:
    """One leg of a call as the event shows it."""

    id: str
    direction: str  # "Inbound" | "Outbound"
    from_phone: str | None
    to_phone: str | None
    status: str  # status.code: Setup, Proceeding, Answered, Disconnected, Gone, VoiceMail, ...
    reason: str | None  # status.reason on Disconnected / Gone
    missed_call: bool
    recording_ids: tuple[str, ...]


@dataclass(slots=True, frozen=True)
class SessionEvent:
    """One telephony-session notification body."""

    telephony_session_id: str
    sequence: int
    event_time: datetime
    parties: tuple[Party, ...]


def is_session_event(event_filter: str) -> bool:
    """Whether a notification's `event` names a telephony-sessions filter."""
    return TELEPHONY_SESSIONS in event_filter


def _phone(end: Any) -> str | None:
    if isinstance(end, dict) and end.get("phoneNumber"):
        return str(end["phoneNumber"])
    return None


def _time(raw: Any) -> datetime:
    if not isinstance(raw, str) or not raw:
        raise InvalidSessionEvent("a session event needs eventTime")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidSessionEvent(f"eventTime {raw!r} is not an ISO timestamp") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _party(raw: Any) -> Party:
    if not isinstance(raw, dict) or not raw.get("id"):
        raise InvalidSessionEvent("every party needs an id")
    raw_status, raw_recordings = raw.get("status"), raw.get("recordings")
    status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    recordings: list[Any] = raw_recordings if isinstance(raw_recordings, list) else []
    return Party(
        id=str(raw["id"]),
        direction=str(raw.get("direction") or ""),
        from_phone=_phone(raw.get("from")),
        to_phone=_phone(raw.get("to")),
        status=str(status.get("code") or ""),
        reason=str(status["reason"]) if status.get("reason") else None,
        missed_call=bool(raw.get("missedCall")),
        recording_ids=tuple(str(r["id"]) for r in recordings if isinstance(r, dict) and r.get("id")),
    )


def parse_session_event(body: dict[str, Any]) -> SessionEvent:
    """The notification's `body` -> `SessionEvent`; raises `InvalidSessionEvent`."""
    session_id = body.get("telephonySessionId")
    sequence = body.get("sequence")
    parties = body.get("parties")
    if not session_id or not isinstance(parties, list):
        raise InvalidSessionEvent("a session event needs telephonySessionId and parties")
    if isinstance(sequence, bool) or not isinstance(sequence, int | str) or not str(sequence).isdigit():
        raise InvalidSessionEvent("a session event needs an integer sequence")
    return SessionEvent(
        telephony_session_id=str(session_id),
        sequence=int(sequence),
        event_time=_time(body.get("eventTime")),
        parties=tuple(_party(p) for p in parties),
    )
