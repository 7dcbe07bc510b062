"""The deterministic brain: intents and slots from `agent.nlu`, the same tools and policies.

It is the offline default and the last fallback behind the LLM brain. Each turn reads
the message (`understand`), settles any question it was waiting on (a yes/no, a
missing detail), else handles the message's intent; multi-turn tasks (booking,
waitlist, cancel, reschedule) keep their progress in a `Dialog` saved in
`BrainRequest.state`. Every business fact it says comes from a tool result.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from agent.brain import BrainEvent, BrainRequest, Channel, TextDelta
from agent.brains.dialog_state import Dialog
from agent.brains.phrasing import (
    best_sentences,
    join_and,
    say_day,
    say_money,
    say_party,
    say_time,
    sentences,
)
from agent.models import TransferReason
from agent.nlu.entities import YesNo
from agent.nlu.intents import Intent
from agent.nlu.understand import Understanding, understand
from agent.tools.base import ToolBox, ToolResult

LOCAL_ZONE = ZoneInfo("America/Los_Angeles")
MAX_GUESTS = 60
MAX_MISSES = 2
SUMMARY_CHARS = 400

HELP_MENU = (
    "I can check open dates, give you a price quote, book a chef, change or cancel a booking, "
    "or answer questions about our service."
)
CARD_WARNING = (
    "For your security, please don't send card numbers here. "
    "Payments go only through our secure deposit link."
)
PHONE_NOTE = "I go by the number you're contacting us from, so there's no need to send a phone number."
ASK_DATE = "What date would you like?"
ASK_PARTY = "How many guests? Tell me adults and kids 3 to 12; little ones under 3 eat free."
ASK_NAME = "What name should I put the booking under?"
ASK_HUMAN = "Would you like me to connect you with someone from our team?"
# Answers that settle a pending question; anything else is a new request.
SETTLING = frozenset({Intent.unknown, Intent.greeting, Intent.thanks, Intent.book, Intent.availability})
SIDE_INTENTS = frozenset({Intent.faq, Intent.loyalty, Intent.my_bookings, Intent.deposit})
OPEN_STATUSES = frozenset({"pending_deposit", "confirmed"})
ORDINALS = ("first", "second", "third", "1st", "2nd", "3rd")
ORDINAL = re.compile(r"\b(first|second|third|1st|2nd|3rd)\b(?!\s+of\b)")


class DeterministicBrain:
    """Rule-based brain: no model, no network; the same tools as the LLM brain."""

    name = "deterministic"

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        turn = Turn(request, tools)
        await turn.run()
        for index, sentence in enumerate(turn.reply):
            yield TextDelta(sentence if index == 0 else " " + sentence)


class Turn:
    """One customer message: read it, act through tools, collect the reply sentences."""

    def __init__(self, request: BrainRequest, tools: ToolBox) -> None:
        self.request = request
        self.tools = tools
        self.dialog = Dialog.load(request.state)
        self.local_now = request.now.astimezone(LOCAL_ZONE)
        self.nlu: Understanding = understand(request.text, self.local_now, expecting=self.dialog.awaiting)
        self.reply: list[str] = []
        self.handlers: dict[Intent, Callable[[], Awaitable[None]]] = {
            Intent.injection: self.on_injection,
            Intent.points_request: self.on_points_request,
            Intent.abuse: self.on_abuse,
            Intent.transfer: self.on_transfer_request,
            Intent.complaint: self.on_complaint,
            Intent.large_event: self.on_large_event,
            Intent.marketing_out: self.on_marketing_out,
            Intent.marketing_in: self.on_marketing_in,
            Intent.texts_off: self.on_texts_off,
            Intent.cancel: self.on_cancel,
            Intent.reschedule: self.on_reschedule,
            Intent.deposit: self.on_deposit,
            Intent.waitlist: self.on_waitlist,
            Intent.loyalty: self.on_loyalty,
            Intent.my_bookings: self.on_my_bookings,
            Intent.quote: self.on_quote,
            Intent.availability: self.on_availability,
            Intent.book: self.on_book,
            Intent.faq: self.on_faq,
            Intent.thanks: self.on_thanks,
            Intent.bye: self.on_bye,
            Intent.greeting: self.on_greeting,
            Intent.unknown: self.on_unknown,
        }

    # ---- the turn -------------------------------------------------------------------------

    async def run(self) -> None:
        nlu = self.nlu
        if nlu.card_number:
            self.say(CARD_WARNING)
        elif nlu.phone_number:
            self.say(PHONE_NOTE)
        if nlu.empty:
            if not self.reply:
                self.say("How can I help you today?" if not self.dialog.question else "")
            self.remind()
        elif not await self.settle_pending():
            await self.handlers[nlu.intent]()
        self.maybe_offer_human()
        self.dialog.save(self.request.state)

    def say(self, *texts: str) -> None:
        for text in texts:
            self.reply.extend(sentences(text))

    def ask(self, question: str, awaiting: str) -> None:
        self.say(question)
        self.dialog.awaiting = awaiting
        self.dialog.question = question

    def remind(self) -> None:
        """Repeat the question a side topic interrupted, if any."""
        if self.dialog.question and self.dialog.question not in self.reply:
            self.say(self.dialog.question)

    def maybe_offer_human(self) -> None:
        dialog = self.dialog
        if not self.request.offer_human or dialog.human_offered or dialog.awaiting == "human":
            return
        dialog.human_offered = True
        dialog.human_reason = TransferReason.negative_sentiment
        if dialog.awaiting is None:
            self.say("I'm sorry if this has been frustrating.")
            self.ask(ASK_HUMAN, "human")
        else:
            self.say("If you'd rather talk with someone from our team, just say so.")

    async def call(self, name: str, **arguments: Any) -> ToolResult:
        return await self.tools.call(
            name, {key: value for key, value in arguments.items() if value is not None}
        )

    @property
    def location(self) -> str | None:
        return self.dialog.region

    # ---- pending questions ----------------------------------------------------------------

    async def settle_pending(self) -> bool:
        """Handle the message as the answer to what we asked; False if it is something else."""
        dialog, nlu = self.dialog, self.nlu
        awaiting = dialog.awaiting
        if awaiting is None:
            return False
        strong = nlu.intent not in SETTLING
        if awaiting == "human" and nlu.yes_no is None:
            dialog.awaiting = dialog.question = None  # they moved on; the offer stands unspoken
            return False
        if awaiting in ("confirm", "confirm_cancel", "confirm_reschedule", "book_offer", "human"):
            changes = self.take_slots() if awaiting in ("confirm", "book_offer") else False
            if changes:
                await self.continue_flow()
                return True
            # "No thanks, just the price" after a quote declines the offer to book; it does
            # not ask for the same quote again.
            declines_quote = (
                awaiting == "book_offer" and nlu.yes_no is YesNo.no and nlu.intent is Intent.quote
            )
            if nlu.yes_no is None or (
                strong and not declines_quote and nlu.intent not in (Intent.cancel, Intent.reschedule)
            ):
                return False
            if (
                nlu.intent in (Intent.cancel, Intent.reschedule)
                and nlu.yes_no is YesNo.yes
                and len(nlu.normalized.split()) > 3
            ):
                return False
            await self.answer_yes_no(awaiting, nlu.yes_no)
            return True
        if awaiting == "alternative":
            if nlu.intent is Intent.waitlist or (nlu.yes_no is YesNo.no and not nlu.has_booking_details):
                return False
            if await self.pick_alternative():
                return True
        if strong and not (nlu.has_booking_details and nlu.intent in (Intent.quote,)):
            return False
        if dialog.flow is None:
            return False
        changed = self.take_slots()
        if not changed and awaiting in ("date", "time", "party", "name", "code", "change", "alternative"):
            if nlu.intent in (Intent.greeting, Intent.thanks):
                return False
            await self.missed(awaiting)
            return True
        await self.continue_flow()
        return True

    async def answer_yes_no(self, awaiting: str, answer: YesNo) -> None:
        dialog = self.dialog
        dialog.awaiting = dialog.question = None
        yes = answer is YesNo.yes
        if awaiting == "confirm":
            if yes:
                await self.create_booking()
            else:
                self.ask(
                    "No problem. What would you like to change: the date, time, guests or name?", "change"
                )
        elif awaiting == "book_offer":
            if yes:
                dialog.flow = "book"
                await self.advance_booking()
            else:
                dialog.finish()
                self.say("No problem. Anything else I can help with?")
        elif awaiting == "confirm_cancel":
            if yes:
                await self.cancel_booking()
            else:
                dialog.finish()
                self.say("Okay, I've left your booking as it is.")
        elif awaiting == "confirm_reschedule":
            if yes:
                await self.reschedule_booking()
            else:
                self.ask("Okay. What day and time would you like instead?", "change")
        elif awaiting == "human":
            if yes:
                await self.transfer(TransferReason(dialog.human_reason or TransferReason.requested))
            else:
                self.say("Okay, I'm still here to help.", HELP_MENU)

    async def missed(self, awaiting: str) -> None:
        self.dialog.misses += 1
        hints = {
            "date": "Sorry, I didn't catch the date. You can say something like Saturday, December 5th.",
            "time": "Sorry, I didn't catch the time. Our events start at 12 pm, 3 pm or 6 pm.",
            "party": "Sorry, I didn't catch how many guests. For example: 15 adults and 4 kids.",
            "name": "Sorry, I didn't catch the name.",
            "code": "Sorry, I didn't catch that. Your booking code starts with MH.",
            "change": "Sorry, I didn't catch that. Tell me the new date, time, guests or name.",
            "alternative": "Sorry, I didn't catch which one.",
        }
        self.say(hints.get(awaiting, "Sorry, I didn't catch that."))
        if self.dialog.misses >= MAX_MISSES and not self.dialog.human_offered:
            self.dialog.human_offered = True
            self.say("If it's easier, I can connect you with someone from our team; just say so.")
        self.remind()

    def take_slots(self) -> bool:
        """Copy what the message says into the dialog; whether anything changed."""
        dialog, nlu = self.dialog, self.nlu
        before = dialog.details()
        if nlu.date:
            dialog.date = nlu.date.day.isoformat()
        if nlu.time:
            if nlu.time.slot:
                dialog.time = nlu.time.slot
            else:
                self.say(
                    f"Our events start at 12 pm, 3 pm or 6 pm, so {nlu.time.hour % 12 or 12} "
                    f"{'am' if nlu.time.hour < 12 else 'pm'} won't work."
                )
        party = nlu.party
        if not party.empty:
            if party.adults is not None:
                dialog.adults = party.adults
                dialog.children = party.children or 0
                dialog.toddlers = party.toddlers or 0
            elif party.total is not None:
                dialog.children = party.children or 0
                dialog.toddlers = party.toddlers or 0
                dialog.adults = max(party.total - dialog.children - dialog.toddlers, 0)
            else:
                dialog.children = party.children if party.children is not None else dialog.children
                dialog.toddlers = party.toddlers if party.toddlers is not None else dialog.toddlers
        paying = (dialog.adults or 0) + dialog.children
        for kind, count in nlu.upgrades.items():
            setattr(dialog, kind, paying if count < 0 else min(count, paying) if paying else count)
        if nlu.name:
            dialog.name = nlu.name
            if dialog.flow in ("cancel", "reschedule"):
                dialog.last_name = nlu.name.split()[-1]
        if nlu.region:
            dialog.region = nlu.region
        if nlu.code:
            dialog.code = nlu.code
        after = dialog.details()
        if before != after:
            dialog.misses = 0
            if (before[2:7]) != (after[2:7]):
                dialog.quote = None
            return True
        return False

    async def continue_flow(self) -> None:
        flow = self.dialog.flow
        if flow in ("cancel", "reschedule"):
            await self.advance_change()
        elif flow == "quote":
            await self.advance_quote()
        elif flow == "waitlist":
            await self.advance_waitlist()
        else:
            self.dialog.flow = "book"
            await self.advance_booking()

    # ---- safety ---------------------------------------------------------------------------

    async def on_injection(self) -> None:
        self.say("I can only help with My Hibachi bookings and questions, and that doesn't change.")
        self.remind_or_menu()

    async def on_points_request(self) -> None:
        self.say("I can't add or change points. Only our staff can adjust Hibachi Rewards points.")
        if not self.dialog.question:
            self.say("I can tell you your current balance if you like.")
        self.remind()

    async def on_abuse(self) -> None:
        self.say("I'm sorry this has been frustrating. I'm here to help.")
        self.dialog.human_offered = True
        self.dialog.human_reason = TransferReason.negative_sentiment
        self.ask(ASK_HUMAN, "human")

    def remind_or_menu(self) -> None:
        if self.dialog.question:
            self.remind()
        else:
            self.say(HELP_MENU)

    # ---- hand-offs ------------------------------------------------------------------------

    async def on_transfer_request(self) -> None:
        await self.transfer(TransferReason.requested)

    async def on_complaint(self) -> None:
        self.say("I'm really sorry to hear that.")
        await self.transfer(TransferReason.complaint)

    async def on_large_event(self) -> None:
        self.say("Weddings, corporate events and groups over 60 are planned with our team directly.")
        await self.transfer(TransferReason.large_party)

    async def transfer(self, reason: TransferReason) -> None:
        result = await self.call("transfer_to_staff", reason=reason.value, summary=self.staff_summary(reason))
        self.dialog.finish()
        self.dialog.forget_event()
        self.say(result.message)

    def staff_summary(self, reason: TransferReason) -> str:
        dialog = self.dialog
        who = self.request.customer_name or dialog.name or "A customer"
        channel = "called" if self.request.channel is Channel.voice else "texted"
        said = " ".join(self.nlu.text.split())[:160]
        parts = [f'{who} {channel} ({reason.value.replace("_", " ")}): "{said}".']
        if dialog.flow == "book" and dialog.date:
            detail = f"Was booking {say_day(dialog.date)}"
            if dialog.time:
                detail += f" at {say_time(dialog.time)}"
            if dialog.adults is not None:
                detail += f" for {dialog.guests} guests"
            parts.append(detail + ".")
        elif dialog.code:
            parts.append(f"About booking {dialog.code}.")
        return " ".join(parts)[:SUMMARY_CHARS]

    # ---- simple relays --------------------------------------------------------------------

    async def relay(self, name: str, **arguments: Any) -> ToolResult:
        result = await self.call(name, **arguments)
        self.say(result.message)
        return result

    async def on_marketing_out(self) -> None:
        await self.relay("set_text_preferences", marketing=False)
        self.remind()

    async def on_marketing_in(self) -> None:
        await self.relay("set_text_preferences", marketing=True)
        self.remind()

    async def on_texts_off(self) -> None:
        await self.relay("set_text_preferences", all_texts=False)

    async def on_deposit(self) -> None:
        self.take_slots()
        await self.relay(
            "send_deposit_link", code=self.nlu.code or self.dialog.code, last_name=self.dialog.last_name
        )
        self.remind()

    async def on_loyalty(self) -> None:
        history = any(word in self.nlu.normalized for word in ("history", "earned", "activity", "expire"))
        await self.relay("get_loyalty", include_history=history)
        self.remind()

    async def on_my_bookings(self) -> None:
        await self.relay("list_my_bookings")
        self.remind()

    # ---- questions ------------------------------------------------------------------------

    async def on_faq(self) -> None:
        answered = await self.answer_question()
        if not answered:
            if self.dialog.question:
                self.say("I'm not sure about that one; our team can tell you.")
            else:
                self.say("I'm not sure about that one.")
                self.dialog.human_reason = TransferReason.cannot_help
                self.ask(ASK_HUMAN, "human")
                return
        self.remind()

    async def answer_question(self) -> bool:
        """Answer from the knowledge base; False if it has nothing confident."""
        question = " ".join(self.nlu.text.split())[:500]
        if len(question) < 2:
            return False
        result = await self.call("faq_search", question=question)
        passages = result.data.get("passages") or []
        if not result.ok or not passages or not result.data.get("confident", False):
            return False
        answer = best_sentences(str(passages[0].get("text", "")), question)
        if not answer:
            return False
        self.say(answer)
        self.dialog.misses = 0
        return True

    async def on_unknown(self) -> None:
        if self.nlu.has_booking_details:
            self.take_slots()
            await self.continue_flow()
            return
        if self.nlu.name and self.take_slots():
            self.say(f"Thanks, {self.dialog.name}.")
            self.remind_or_menu()
            return
        if await self.answer_question():
            self.remind()
            return
        dialog = self.dialog
        dialog.misses += 1
        if dialog.misses >= MAX_MISSES and dialog.awaiting is None:
            self.say("Sorry, I'm not sure I can help with that.")
            dialog.human_reason = TransferReason.cannot_help
            dialog.human_offered = True
            self.ask(ASK_HUMAN, "human")
            return
        self.say("Sorry, I didn't quite get that.")
        self.remind_or_menu()

    async def on_greeting(self) -> None:
        name = self.request.customer_name
        first = f" {name.split()[0]}" if name else ""
        self.say(f"Hi{first}! This is My Hibachi.")
        if self.dialog.question:
            self.remind()
        else:
            self.say(HELP_MENU, "How can I help?")

    async def on_thanks(self) -> None:
        self.say("You're welcome!")
        if self.dialog.question:
            self.remind()
        else:
            self.say("Anything else I can help with?")

    async def on_bye(self) -> None:
        self.dialog.finish()
        self.say("Thanks for contacting My Hibachi. Have a great day!")

    # ---- quotes ---------------------------------------------------------------------------

    async def on_quote(self) -> None:
        self.start("quote")
        self.take_slots()
        await self.advance_quote()

    def start(self, flow: str) -> None:
        """Begin a task; day and time carry over only between booking-like tasks."""
        dialog = self.dialog
        booking_like = {"book", "quote", "waitlist", None}
        if (dialog.flow in booking_like) != (flow in booking_like) or flow in ("cancel", "reschedule"):
            dialog.forget_event()
            dialog.booking = None
            dialog.code = None
        dialog.flow = flow
        dialog.awaiting = dialog.question = None
        dialog.misses = 0

    async def advance_quote(self) -> None:
        dialog = self.dialog
        if dialog.guests > MAX_GUESTS:
            await self.on_large_event()
            return
        if dialog.adults is None:
            self.ask(ASK_PARTY, "party")
            return
        result = await self.call("get_quote", **self.party_args())
        dialog.quote = result.data or None
        self.say(result.message)
        dialog.awaiting = dialog.question = None
        if dialog.date:
            dialog.flow = "book"
            await self.advance_booking()
        else:
            dialog.flow = None
            self.ask("Would you like to check a date?", "book_offer")

    async def quote_summary(self) -> str:
        """The price in one or two short sentences (the full quote is for when they ask)."""
        dialog = self.dialog
        if dialog.quote is None:
            result = await self.call("get_quote", **self.party_args())
            if not result.ok:
                return result.message
            dialog.quote = result.data
        quote = dialog.quote.get("quote") or {}
        total = quote.get("total")
        if not isinstance(total, int | float):
            return ""
        summary = (
            f"The estimated total is {say_money(total)} with tax, before tip; "
            "the $100 deposit counts toward it."
        )
        problem = dialog.quote.get("problem")
        if problem:
            summary += f" Note that {problem}."
        return summary

    def party_args(self) -> dict[str, int]:
        dialog = self.dialog
        return {
            "adults": dialog.adults or 0,
            "children": dialog.children,
            "toddlers": dialog.toddlers,
            "filet_upgrades": dialog.filet,
            "lobster_upgrades": dialog.lobster,
        }

    # ---- availability and booking ---------------------------------------------------------

    async def on_availability(self) -> None:
        if self.dialog.flow not in ("book", "quote", "waitlist"):
            self.start("book")
        self.dialog.flow = "book"
        self.take_slots()
        await self.advance_booking(just_checking=True)

    async def on_book(self) -> None:
        if self.dialog.flow not in ("book", "quote", "waitlist"):
            self.start("book")
        self.dialog.flow = "book"
        self.take_slots()
        await self.advance_booking()

    async def check_day(self) -> bool:
        """Load the open times of the wished-for day; False (and said why) if it can't be booked."""
        dialog = self.dialog
        assert dialog.date is not None
        result = await self.call("check_availability", event_date=dialog.date, location=self.location)
        if not result.ok:
            self.say(result.message)
            dialog.date = dialog.checked_date = None
            self.ask("Which other date would work?", "date")
            return False
        slots = result.data.get("slots") or []
        dialog.open_times = [str(slot["start"])[:5] for slot in slots if int(slot.get("remaining", 0)) > 0]
        if not dialog.open_times and any(slot.get("reason") for slot in slots):
            self.say(result.message)  # too soon, too far ahead, or closed: another day, not a waitlist
            dialog.date = dialog.checked_date = None
            self.ask("Which other date would work?", "date")
            return False
        dialog.checked_date = dialog.date
        return True

    async def advance_booking(self, *, just_checking: bool = False) -> None:
        """Ask for the next missing detail, or summarise and ask to confirm."""
        dialog = self.dialog
        if dialog.guests > MAX_GUESTS:
            await self.on_large_event()
            return
        if dialog.date is None:
            self.ask(ASK_DATE, "date")
            return
        if dialog.checked_date != dialog.date and not await self.check_day():
            return
        day = say_day(dialog.date)
        if not dialog.open_times:
            self.say(f"Sorry, {day} is fully booked.")
            await self.offer_alternatives()
            return
        if dialog.time is not None and dialog.time not in dialog.open_times:
            self.say(
                f"Sorry, {say_time(dialog.time)} on {day} is full. We still have "
                f"{join_and([say_time(t) for t in dialog.open_times])} open that day."
            )
            self.ask(
                f"Would one of those work, or shall I add you to the waitlist for {say_time(dialog.time)}?",
                "alternative",
            )
            dialog.alternatives = [{"date": dialog.date, "start": t} for t in dialog.open_times]
            return
        if dialog.time is None:
            times = join_and([say_time(t) for t in dialog.open_times])
            self.say(f"On {day} we have {times} open.")
            self.ask("Which time works for you?", "time")
            return
        if just_checking:
            self.say(f"Good news: {say_time(dialog.time)} on {day} is open.")
            self.ask("Would you like to book it?", "book_offer")
            return
        if dialog.adults is None:
            self.ask(ASK_PARTY, "party")
            return
        name = dialog.name or self.request.customer_name
        if not name:
            self.ask(ASK_NAME, "name")
            return
        dialog.name = name
        quote = await self.quote_summary()
        party = say_party(dialog.adults, dialog.children, dialog.toddlers)
        upgrades = [f"{n} {kind}" for kind, n in (("filet", dialog.filet), ("lobster", dialog.lobster)) if n]
        extra = f", with {join_and(upgrades)} upgrades" if upgrades else ""
        self.say(f"Here's the booking: {day} at {say_time(dialog.time)} for {party}{extra}, under {name}.")
        self.say(quote)
        self.ask("Shall I book it?", "confirm")

    async def offer_alternatives(self) -> None:
        dialog = self.dialog
        assert dialog.date is not None
        result = await self.call(
            "find_open_slots", near_date=dialog.date, near_time=dialog.time, location=self.location, limit=3
        )
        self.offer(result.data.get("slots") or [])

    def offer(self, slots: list[dict[str, Any]]) -> None:
        dialog = self.dialog
        dialog.alternatives = [{"date": str(s["date"]), "start": str(s["start"])[:5]} for s in slots][:3]
        if not dialog.alternatives:
            self.ask("I don't see anything open nearby. Shall I add you to the waitlist?", "alternative")
            return
        options = [f"{say_day(a['date'])} at {say_time(a['start'])}" for a in dialog.alternatives]
        self.say(f"The nearest open times are {join_and(options)}.")
        self.ask("Would one of those work, or shall I add you to the waitlist?", "alternative")

    async def pick_alternative(self) -> bool:
        """Take the alternative the customer chose ("3 pm", "the first one", "yes"); False if none."""
        dialog, nlu = self.dialog, self.nlu
        options = dialog.alternatives
        chosen: dict[str, str] | None = None
        ordinal = ORDINAL.search(nlu.normalized)
        if ordinal:
            index = ORDINALS.index(ordinal.group(1)) % 3
            chosen = options[index] if index < len(options) else None
        elif nlu.time or nlu.date:
            matches = [
                o
                for o in options
                if (not nlu.time or o["start"] == nlu.time.slot)
                and (not nlu.date or o["date"] == nlu.date.day.isoformat())
            ]
            chosen = matches[0] if matches else None
        if chosen is None and nlu.yes_no is YesNo.yes and len(options) == 1:
            chosen = options[0]
        if chosen is None:
            if nlu.yes_no is YesNo.yes and not options:
                await self.on_waitlist()
                return True
            return False
        dialog.date, dialog.time = chosen["date"], chosen["start"]
        dialog.alternatives = []
        dialog.awaiting = dialog.question = None
        self.take_slots_except_time_date()
        await self.continue_flow()
        return True

    def take_slots_except_time_date(self) -> None:
        party = self.nlu.party
        if party.adults is not None or party.total is not None:
            date_, time_ = self.dialog.date, self.dialog.time
            self.take_slots()
            self.dialog.date, self.dialog.time = date_, time_

    async def create_booking(self) -> None:
        dialog = self.dialog
        assert dialog.date is not None
        assert dialog.time is not None
        assert dialog.name is not None
        result = await self.call(
            "create_booking",
            event_date=dialog.date,
            start_time=dialog.time,
            customer_name=dialog.name,
            location=self.location,
            **self.party_args(),
        )
        if result.ok:
            self.confirm_booked(result)
            dialog.finish()
            dialog.forget_event()
            dialog.adults, dialog.children, dialog.toddlers, dialog.filet, dialog.lobster = None, 0, 0, 0, 0
            return
        self.say(result.message)
        if result.error == "SlotUnavailable":
            dialog.checked_date = None
            self.offer(list(result.data.get("alternatives") or []))
        else:
            self.ask("Would you like to change the date, time or guests?", "change")

    def confirm_booked(self, result: ToolResult) -> None:
        booking = result.data.get("booking") or {}
        code = booking.get("code")
        deposit = booking.get("deposit") or {}
        if not code:
            self.say(result.message)
            return
        self.say(f"You're booked! Your booking code is {code}.")
        amount = deposit.get("amount")
        money = say_money(amount) if isinstance(amount, int | float) else "$100"
        if result.data.get("deposit_link_texted"):
            self.say(f"I've texted you a link to pay the {money} deposit; it expires in 24 hours.")
        elif deposit.get("payment_url") and self.request.channel is Channel.sms:
            self.say(f"Pay the {money} deposit here within 24 hours: {deposit['payment_url']}")
        else:
            self.say(result.message)

    # ---- waitlist -------------------------------------------------------------------------

    async def on_waitlist(self) -> None:
        self.start("waitlist")
        self.take_slots()
        await self.advance_waitlist()

    async def advance_waitlist(self) -> None:
        dialog = self.dialog
        if dialog.date is None:
            self.ask("Which date should I put you on the waitlist for?", "date")
            return
        if dialog.time is None:
            self.ask("Which time: 12 pm, 3 pm or 6 pm?", "time")
            return
        if dialog.adults is None:
            self.ask("How many guests?", "party")
            return
        result = await self.call(
            "join_waitlist",
            event_date=dialog.date,
            start_time=dialog.time,
            party_size=max(dialog.guests, 1),
            customer_name=dialog.name or self.request.customer_name,
            location=self.location,
        )
        self.say(result.message)
        dialog.finish()
        dialog.forget_event()

    # ---- cancel and reschedule ------------------------------------------------------------

    async def on_cancel(self) -> None:
        self.start("cancel")
        self.take_slots()
        await self.advance_change()

    async def on_reschedule(self) -> None:
        self.start("reschedule")
        self.take_slots()
        await self.advance_change()

    async def advance_change(self) -> None:
        dialog = self.dialog
        if dialog.booking is None and not await self.find_booking():
            return
        booking = dialog.booking or {}
        label = self.describe(booking)
        if dialog.flow == "cancel":
            self.ask(f"Just to confirm: cancel {label}?", "confirm_cancel")
            return
        if dialog.date is None:
            self.ask(f"What new date would you like for {label}?", "date")
            return
        if dialog.checked_date != dialog.date and not await self.check_day():
            return
        day = say_day(dialog.date)
        if not dialog.open_times:
            self.say(f"Sorry, {day} is fully booked.")
            await self.offer_alternatives()
            return
        if dialog.time is None or dialog.time not in dialog.open_times:
            if dialog.time is not None:
                self.say(f"Sorry, {say_time(dialog.time)} is full that day.")
            times = join_and([say_time(t) for t in dialog.open_times])
            self.ask(f"On {day} we have {times} open. Which time would you like?", "time")
            return
        self.ask(f"Just to confirm: move {label} to {day} at {say_time(dialog.time)}?", "confirm_reschedule")

    async def find_booking(self) -> bool:
        """Pick the booking to change: by code, or the caller's only upcoming one; else ask."""
        dialog = self.dialog
        if dialog.code:
            dialog.booking = {"code": dialog.code}
            return True
        result = await self.call("list_my_bookings")
        bookings = [b for b in result.data.get("bookings") or [] if str(b.get("status", "")) in OPEN_STATUSES]
        wanted = self.nlu.date.day.isoformat() if self.nlu.date else None
        if wanted and len(bookings) > 1:
            bookings = [b for b in bookings if str(b.get("event_date")) == wanted] or bookings
        if len(bookings) == 1:
            dialog.booking = bookings[0]
            dialog.code = str(bookings[0].get("code"))
            if dialog.flow == "reschedule" and wanted == str(bookings[0].get("event_date")):
                dialog.date = None  # the date named was the old one
            return True
        if not bookings:
            self.say("I don't see an upcoming booking for the number you're contacting us from.")
            self.ask(
                "If it was booked from another phone, send me the booking code and the last name on it.",
                "code",
            )
            return False
        listed = join_and([self.describe(b) for b in bookings[:4]])
        self.say(f"I see {len(bookings)} upcoming bookings: {listed}.")
        self.ask("Which one do you mean? The booking code is easiest.", "code")
        return False

    def describe(self, booking: dict[str, Any]) -> str:
        code = booking.get("code") or "your booking"
        when = booking.get("event_date")
        start = booking.get("start_time")
        label = f"booking {code}" if booking.get("code") else "your booking"
        if when:
            label += f" on {say_day(str(when)[:10])}"
        if start:
            label += f" at {say_time(str(start))}"
        return label

    async def cancel_booking(self) -> None:
        dialog = self.dialog
        result = await self.call("cancel_booking", code=dialog.code, last_name=dialog.last_name)
        self.say(result.message)
        refunded = result.data.get("deposit_refunded")
        if result.ok and "deposit" not in result.message.lower() and isinstance(refunded, bool):
            self.say(
                "Your deposit will be refunded."
                if refunded
                else "Since it's within 48 hours of the event, the deposit is kept."
            )
        dialog.finish()
        dialog.forget_event()

    async def reschedule_booking(self) -> None:
        dialog = self.dialog
        result = await self.call(
            "reschedule_booking",
            code=dialog.code,
            last_name=dialog.last_name,
            new_date=dialog.date,
            new_start_time=dialog.time,
        )
        self.say(result.message)
        if result.ok or result.error != "SlotUnavailable":
            dialog.finish()
            dialog.forget_event()
        else:
            dialog.checked_date = None
            self.offer(list(result.data.get("alternatives") or []))
