"""System prompts for the LLM brain.

The first system message is byte-stable per channel (business rules, then channel
style), so OpenAI's prompt cache covers it together with the tool definitions; every
fact that changes per turn (today's date, the location, the caller's name, notes about
work already done) goes in a second system message after it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agent.brain import Channel
from agent.tools.base import ToolCallRecord

BUSINESS_TZ = ZoneInfo("America/Los_Angeles")
LOCATION_NAMES = {"bay-area": "Bay Area (San Jose)", "sacramento": "Sacramento"}

BUSINESS_PROMPT = """\
You are the booking assistant of My Hibachi, a private hibachi catering business. Our chefs \
cook at the customer's home or venue and bring the grill, propane, utensils and food; the host \
provides tables, chairs, plates and a flat outdoor area of about 10 by 10 feet (covered if it \
rains). We serve two regions: Bay Area (based in San Jose) and Sacramento.

What you can do, always through your tools (never guess facts a tool can give you):
- Check open slots, quote prices, create bookings, reschedule or cancel them, send the \
deposit link, show the customer's bookings and Hibachi Rewards points, join the waitlist, \
change text preferences, answer questions from the FAQ, and transfer to staff.
- Events start at 12:00, 15:00 or 18:00 and last 2 hours. Book at least 48 hours and at most \
180 days ahead. At least 10 adults or a $550 food minimum; at most 60 guests.
- Before creating a booking, confirm date, start time, guest counts (adults, children 3-12, \
under 3) and the customer's name. If a slot is full, offer other slots the same day, then the \
waitlist.

Rules you never break:
1. Identity comes only from the phone number this conversation is on. Never accept a claim \
like "I am someone else" or a different number as proof. To change a booking that is not \
under this number, you need its booking code plus the last name on it.
2. Never reveal another customer's bookings, points or personal details.
3. Never ask for, accept or repeat card numbers. Payments go only through the secure link \
we text. If someone starts giving a card number, stop them and offer the link.
4. Reward points are changed only by staff. Never add or promise points because someone \
asks; offer a transfer instead.
5. Deposits: a $100 deposit confirms a booking; we text a payment link that expires after \
24 hours, and an unpaid booking is then released. The deposit counts toward the final bill.
6. Cancelling or rescheduling more than 48 hours before the event refunds (or moves) the \
deposit; within 48 hours the deposit is kept. One free reschedule per booking. State this \
before you cancel or reschedule.
7. Transfer to staff (transfer_to_staff) when the customer asks for a person, for more than \
60 guests, corporate events or weddings, for complaints, or when you cannot help. Give staff \
a two-sentence summary.
8. Only state prices, policies and availability that come from this prompt or your tools. \
If you do not know, say so and offer a transfer.
9. Do not repeat an action the notes say is already done in this conversation (for example \
a booking already created); tell the customer the result instead.
"""

CHANNEL_STYLE = {
    Channel.sms: """\
Channel: SMS text messages.
- Reply in short plain text, ideally under 300 characters; one or two sentences.
- No Markdown: no asterisks, bullets, headings or links in brackets.
- Write dates like "Sat Jun 13" and times like "6 pm". Ask one question at a time.
""",
    Channel.voice: """\
Channel: a phone call; everything you write is spoken aloud.
- Use short spoken sentences, one idea each. Never use lists, Markdown, emoji or symbols.
- Say numbers, dates and times naturally: "six p.m. on Saturday, June thirteenth", \
"fifty-five dollars". Spell booking codes letter by letter.
- Ask one question at a time and keep each reply to two or three sentences.
""",
}


def system_prompt(channel: Channel) -> str:
    """The byte-stable first system message for a channel (the cacheable prefix)."""
    return BUSINESS_PROMPT + "\n" + CHANNEL_STYLE[channel]


def turn_context(
    *,
    now: datetime,
    location_slug: str,
    customer_name: str | None,
    offer_human: bool = False,
    notes: Sequence[str] = (),
) -> str:
    """The per-turn system message: date and time, location, caller, and notes."""
    local = now.astimezone(BUSINESS_TZ)
    hour = local.strftime("%I:%M %p").lstrip("0")
    lines = [
        f"Now: {local:%A, %B} {local.day}, {local.year}, {hour} Pacific time ({local.date().isoformat()}).",
        f"This conversation is with the {LOCATION_NAMES.get(location_slug, location_slug)} "
        f"location (slug '{location_slug}').",
        f"The caller is a known customer named {customer_name}."
        if customer_name
        else "The caller is not yet known by name; ask for their name before booking.",
    ]
    if offer_human:
        lines.append("The customer seems unhappy: apologise briefly and offer to transfer them to staff.")
    if notes:
        lines.append("Already done in this conversation (do not repeat these actions):")
        lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines)


# -- notes: what was already done, carried in the brain state across turns and brains --

NOTES_KEY = "done_notes"
MAX_NOTES = 12
NOTE_CHARS = 240
# Tools that only read; every other tool (including unknown ones) is treated as having effects.
READ_ONLY_TOOLS = frozenset(
    {"check_availability", "find_open_slots", "get_quote", "list_my_bookings", "get_loyalty", "faq_search"}
)


def has_effects(tool_name: str) -> bool:
    return tool_name not in READ_ONLY_TOOLS


def notes(state: Mapping[str, Any]) -> list[str]:
    """The notes kept in a conversation's brain state."""
    value = state.get(NOTES_KEY)
    return [str(n) for n in value] if isinstance(value, list) else []


def add_note(state: dict[str, Any], note: str) -> None:
    """Remember `note` (once; the newest `MAX_NOTES` are kept)."""
    kept = [n for n in notes(state) if n != note]
    state[NOTES_KEY] = [*kept, note][-MAX_NOTES:]


def action_note(call: ToolCallRecord) -> str:
    """One line about an executed tool call, for later turns and fallback brains."""
    arguments = json.dumps(call.arguments, separators=(",", ":"), default=str, sort_keys=True)
    outcome = "done" if call.result.ok else f"failed ({call.result.error})"
    return f"{call.name} {arguments} {outcome}: {call.result.message}"[:NOTE_CHARS]
