"""Carrier keywords: STOP / START / HELP as whole messages (never "cancel my booking")."""

from __future__ import annotations

import enum

from booking_tools.locations.models import Location
from booking_tools.messaging.templates import BUSINESS

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})


class Keyword(enum.StrEnum):
    stop = "stop"
    start = "start"
    help = "help"


def classify(text: str) -> Keyword | None:
    """The keyword a whole message is, ignoring case, spaces and trailing punctuation."""
    word = text.strip().strip(".!").strip().upper()
    if word in OPT_OUT:
        return Keyword.stop
    if word in OPT_IN:
        return Keyword.start
    if word in HELP:
        return Keyword.help
    return None


def help_text(location: Location) -> str:
    return (
        f"{BUSINESS}: private hibachi chefs at your home. Our team: {location.staff_phone} "
        "(9am-9pm daily). Text us to book or ask anything. Reply STOP to opt out."
    )


def start_text() -> str:
    return f"{BUSINESS}: you will get our texts again. Reply HELP for help, STOP to opt out."
