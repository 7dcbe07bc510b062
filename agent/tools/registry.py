"""Every tool the agent may use, and the per-turn `ToolBox` bound to the caller."""

from __future__ import annotations

from collections.abc import Sequence

from agent.tools.availability import check_availability, find_open_slots, get_quote
from agent.tools.base import Tool, ToolBox, ToolContext
from agent.tools.bookings import create_booking, list_my_bookings
from agent.tools.changes import cancel_booking, reschedule_booking, send_deposit_link
from agent.tools.faq import faq_search
from agent.tools.loyalty import get_loyalty
from agent.tools.preferences import set_text_preferences
from agent.tools.transfer import transfer_to_staff
from agent.tools.waitlist import join_waitlist

ALL_TOOLS: tuple[Tool, ...] = (
    faq_search,
    check_availability,
    find_open_slots,
    get_quote,
    create_booking,
    list_my_bookings,
    reschedule_booking,
    cancel_booking,
    send_deposit_link,
    get_loyalty,
    join_waitlist,
    set_text_preferences,
    transfer_to_staff,
)


def build_toolbox(context: ToolContext, tools: Sequence[Tool] = ALL_TOOLS) -> ToolBox:
    """The tools of one turn, bound to who is asking and where."""
    return ToolBox(context, tools)
