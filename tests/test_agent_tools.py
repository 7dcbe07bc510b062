"""The agent's business tools against the real database: results, rules, identity, texts."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.brain import Channel
from agent.models import Conversation, Transfer, TransferOutcome
from agent.tools.base import Effect, ToolBox, ToolContext, ToolResult
from agent.tools.registry import ALL_TOOLS, build_toolbox
from booking_tools.admin.models import AuditEntry
from booking_tools.bookings.models import Booking, BookingStatus
from booking_tools.customers.models import Customer
from booking_tools.deposits import service as deposits
from booking_tools.deposits.models import Deposit, DepositStatus
from booking_tools.messaging.models import OutboundMessage
from booking_tools.seed import seed_demo_customers
from booking_tools.waitlist.models import WaitlistEntry
from hibachi.context import AppContext
from hibachi.db import unit_of_work
from telephony.fakes import FakeTwilio

Sessions = async_sessionmaker[AsyncSession]
RunJobs = Callable[[], Awaitable[None]]

# Monday, March 4, 2030, 10:00 in California (staff hours); events are two weeks later.
NOW = datetime(2030, 3, 4, 18, 0, tzinfo=UTC)
AFTER_HOURS = datetime(2030, 3, 5, 6, 30, tzinfo=UTC)  # Monday 22:30 in California
DAY = date(2030, 3, 16)  # a Saturday
CALLER = "+14085550123"
OTHER = "+14085550177"
STAFF_LINE = "+14085550100"


def toolbox(
    app_ctx: AppContext,
    *,
    phone: str = CALLER,
    location: str = "bay-area",
    now: datetime = NOW,
    conversation_id: uuid.UUID | None = None,
) -> ToolBox:
    return build_toolbox(
        ToolContext(
            app=app_ctx,
            conversation_id=conversation_id or uuid.uuid4(),
            channel="sms",
            customer_phone=phone,
            location_slug=location,
            now=now,
        )
    )


def booking_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "event_date": DAY.isoformat(),
        "start_time": "18:00",
        "adults": 12,
        "children": 2,
        "customer_name": "Alex Kim",
    }
    args.update(overrides)
    return args


async def book(app_ctx: AppContext, *, phone: str = CALLER, **overrides: Any) -> dict[str, Any]:
    """A booking made through the tool from `phone`; returns its data view."""
    result = await toolbox(app_ctx, phone=phone).call("create_booking", booking_args(**overrides))
    assert result.ok, result.message
    booking: dict[str, Any] = result.data["booking"]
    return booking


async def count(db: Sessions, model: type[Any]) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def booking_row(db: Sessions, code: str) -> Booking:
    async with db() as session:
        booking = await session.scalar(select(Booking).where(Booking.code == code))
        assert booking is not None
        return booking


async def pay_deposit(db: Sessions, booking: dict[str, Any]) -> None:
    token = str(booking["deposit"]["payment_url"]).rsplit("/", 1)[-1]
    async with unit_of_work(db) as session:
        deposit = await deposits.deposit_by_token(session, token=token, lock=True)
        await deposits.mark_paid(session, deposit=deposit, now=NOW + timedelta(hours=1))


async def new_conversation(db: Sessions, *, phone: str = CALLER) -> uuid.UUID:
    """The conversation row a transfer belongs to (the engine creates it in production)."""
    async with unit_of_work(db) as session:
        conversation = Conversation(
            channel=Channel.voice,
            provider="twilio",
            customer_phone=phone,
            agent_phone="+14085550199",
            location_slug="bay-area",
            last_activity_at=NOW,
        )
        session.add(conversation)
        await session.flush()
        return conversation.id


def same_answer(a: ToolResult, b: ToolResult) -> bool:
    return (a.ok, a.message, a.data, a.error, a.effect) == (b.ok, b.message, b.data, b.error, b.effect)


# -- availability and quotes ---------------------------------------------------------


async def test_check_availability_tells_places_left_in_each_slot(app_ctx: AppContext) -> None:
    await book(app_ctx, start_time="18:00")

    result = await toolbox(app_ctx).call("check_availability", {"event_date": DAY.isoformat()})

    assert result.ok
    assert result.data["location"] == "bay-area"
    assert [(s["start"], s["remaining"]) for s in result.data["slots"]] == [
        ("12:00", 3),
        ("15:00", 3),
        ("18:00", 2),
    ]
    assert result.message == "Saturday, March 16 at 12 pm has 3 openings; 3 pm and 6 pm are open too."


async def test_check_availability_inside_48_hours_says_why_it_cannot_be_booked(app_ctx: AppContext) -> None:
    result = await toolbox(app_ctx).call("check_availability", {"event_date": "2030-03-05"})

    assert result.ok
    assert all(s["remaining"] == 0 for s in result.data["slots"])
    assert result.message == "Tuesday, March 5 can't be booked: bookings need at least 48 hours' notice."


async def test_find_open_slots_skips_full_slots_nearest_first(app_ctx: AppContext) -> None:
    for phone in ("+19165550201", "+19165550202"):  # Sacramento has two chefs
        await book(app_ctx, phone=phone, location="sacramento")

    result = await toolbox(app_ctx, location="sacramento").call(
        "find_open_slots", {"near_date": DAY.isoformat(), "near_time": "18:00"}
    )

    assert result.ok
    assert [(s["date"], s["start"]) for s in result.data["slots"]] == [
        ("2030-03-16", "12:00"),
        ("2030-03-16", "15:00"),
        ("2030-03-17", "12:00"),
    ]
    assert "Saturday, March 16 at 3 pm" in result.message


async def test_quote_prices_food_tax_and_travel_in_dollars(app_ctx: AppContext) -> None:
    box = toolbox(app_ctx)

    result = await box.call("get_quote", {"adults": 12, "children": 2, "travel_miles": 30})
    small = await box.call("get_quote", {"adults": 5})

    assert result.ok
    quote = result.data["quote"]
    assert (quote["food_subtotal"], quote["tax"], quote["travel_fee"]) == (720, 66.6, 20)
    assert quote["total"] == 806.6
    assert quote["deposit"] == 100
    assert result.data["meets_minimum"] is True
    assert "$806.60" in result.message
    assert small.ok
    assert small.data["meets_minimum"] is False
    assert "$550 food minimum" in small.message


# -- creating bookings ---------------------------------------------------------------


async def test_create_booking_holds_the_slot_and_texts_the_deposit_link(
    app_ctx: AppContext, db: Sessions, fake_twilio: FakeTwilio, run_jobs: RunJobs
) -> None:
    box = toolbox(app_ctx)

    result = await box.call("create_booking", booking_args(notes="shellfish allergy"))
    await run_jobs()

    assert result.ok, result.message
    booking = result.data["booking"]
    assert booking["status"] == "pending_deposit"
    assert booking["code"].startswith("MH")
    assert (booking["event_date"], booking["start_time"]) == ("2030-03-16", "18:00")
    assert booking["quote"]["food_subtotal"] == 12 * 55 + 2 * 30
    assert booking["deposit"]["amount"] == 100
    assert result.data["deposit_link_texted"] is True
    assert booking["code"] in result.message
    assert "deposit" in result.message
    row = await booking_row(db, booking["code"])
    assert row.notes == "shellfish allergy"
    async with db() as session:
        deposit = await session.scalar(select(Deposit).where(Deposit.booking_id == row.id))
        audit = await session.scalar(select(AuditEntry).where(AuditEntry.entity_id == str(row.id)))
    assert deposit is not None
    assert deposit.status is DepositStatus.pending
    assert audit is not None
    assert (audit.actor, audit.action) == (f"agent:{box.context.conversation_id}", "booking.create")
    [text] = [m for m in fake_twilio.messages if m["to"] == CALLER]
    assert text["from"] == "+14085550199"
    assert booking["deposit"]["payment_url"] in text["body"]


async def test_the_same_booking_asked_twice_in_a_conversation_is_made_once(
    app_ctx: AppContext, db: Sessions
) -> None:
    box = toolbox(app_ctx)

    first = await box.call("create_booking", booking_args())
    again = await box.call("create_booking", booking_args())

    assert first.ok
    assert again.ok
    assert again.data["created"] is False
    assert again.data["booking"]["code"] == first.data["booking"]["code"]
    assert await count(db, Booking) == 1


async def test_full_slot_fails_with_the_other_open_times_that_day(app_ctx: AppContext, db: Sessions) -> None:
    for phone in ("+19165550201", "+19165550202"):
        await book(app_ctx, phone=phone, location="sacramento")

    result = await toolbox(app_ctx, location="sacramento").call("create_booking", booking_args())

    assert not result.ok
    assert result.error == "SlotUnavailable"
    assert [(s["date"], s["start"]) for s in result.data["alternatives"]] == [
        ("2030-03-16", "12:00"),
        ("2030-03-16", "15:00"),
    ]
    assert result.message.startswith(
        "Saturday, March 16 at 6 pm is fully booked, but 12 pm and 3 pm are open"
    )
    assert "waitlist" in result.message
    assert await count(db, Booking) == 2


async def test_booking_inside_48_hours_is_refused_in_plain_words(app_ctx: AppContext, db: Sessions) -> None:
    result = await toolbox(app_ctx).call("create_booking", booking_args(event_date="2030-03-05"))

    assert not result.ok
    assert result.error == "BookingRuleViolation"
    assert result.message == "I can't book that: bookings need at least 48 hours' notice."
    assert await count(db, Booking) == 0


async def test_invalid_arguments_are_refused_and_nothing_is_stored(app_ctx: AppContext, db: Sessions) -> None:
    box = toolbox(app_ctx)

    results = [
        await box.call("create_booking", booking_args(event_date="2030-02-30")),
        await box.call("create_booking", booking_args(start_time="13:00")),
        await box.call("create_booking", booking_args(customer_phone="+14085550999")),
        await box.call("create_booking", "{not json"),
    ]

    assert [r.error for r in results] == ["InvalidArguments"] * 4
    assert all(not r.ok and r.message.startswith("Some details were missing") for r in results)
    assert await count(db, Booking) == 0
    assert await count(db, Customer) == 0


async def test_more_than_60_guests_needs_staff_and_books_nothing(app_ctx: AppContext, db: Sessions) -> None:
    result = await toolbox(app_ctx).call("create_booking", booking_args(adults=55, children=6))

    assert not result.ok
    assert result.error == "NeedsStaff"
    assert result.effect is None
    assert "pass you to" in result.message
    assert await count(db, Booking) == 0


# -- the caller's own bookings -------------------------------------------------------


async def test_list_my_bookings_shows_only_the_callers_bookings(app_ctx: AppContext) -> None:
    mine = await book(app_ctx, phone=CALLER)
    await book(app_ctx, phone=OTHER, customer_name="Maria Lopez", start_time="15:00")

    result = await toolbox(app_ctx, phone=CALLER).call("list_my_bookings", {})
    stranger = await toolbox(app_ctx, phone="+14085550999").call("list_my_bookings", {})

    assert result.ok
    assert [b["code"] for b in result.data["bookings"]] == [mine["code"]]
    assert result.message == (
        f"You have one upcoming booking. {mine['code']} on Saturday, March 16 at 6 pm for 14 guests "
        "is waiting for its $100 deposit."
    )
    assert stranger.ok
    assert stranger.data["bookings"] == []
    assert "Maria" not in stranger.message


async def test_owner_reschedules_by_phone_and_the_deposit_moves(app_ctx: AppContext, db: Sessions) -> None:
    booking = await book(app_ctx)
    await pay_deposit(db, booking)
    box = toolbox(app_ctx)

    result = await box.call("reschedule_booking", {"new_date": "2030-03-17", "new_start_time": "15:00"})

    assert result.ok, result.message
    assert result.data["deposit_kept"] is False
    assert result.data["booking"]["status"] == "confirmed"
    assert "moved from Saturday, March 16 at 6 pm to Sunday, March 17 at 3 pm" in result.message
    row = await booking_row(db, booking["code"])
    assert (row.event_date, row.start_time, row.reschedule_count) == (date(2030, 3, 17), time(15), 1)
    async with db() as session:
        actions = list(
            await session.scalars(select(AuditEntry.action).where(AuditEntry.entity_id == str(row.id)))
        )
    assert "booking.reschedule" in actions


async def test_reschedule_into_a_full_slot_offers_that_days_open_times(
    app_ctx: AppContext, db: Sessions
) -> None:
    for phone in ("+19165550201", "+19165550202"):
        await book(app_ctx, phone=phone, location="sacramento", event_date="2030-03-17")
    booking = await book(app_ctx, phone=CALLER, location="sacramento")

    result = await toolbox(app_ctx).call(
        "reschedule_booking", {"code": booking["code"], "new_date": "2030-03-17", "new_start_time": "18:00"}
    )

    assert not result.ok
    assert result.error == "SlotUnavailable"
    assert [s["start"] for s in result.data["alternatives"]] == ["12:00", "15:00"]
    assert (await booking_row(db, booking["code"])).event_date == DAY


async def test_owner_cancels_a_paid_booking_more_than_48_hours_ahead_and_is_refunded(
    app_ctx: AppContext, db: Sessions
) -> None:
    booking = await book(app_ctx)
    await pay_deposit(db, booking)

    result = await toolbox(app_ctx).call("cancel_booking", {"code": booking["code"]})

    assert result.ok, result.message
    assert result.data["deposit_refunded"] is True
    assert result.data["booking"]["status"] == "cancelled"
    assert result.message.endswith("is cancelled. Your $100 deposit will be refunded.")
    assert (await booking_row(db, booking["code"])).status is BookingStatus.cancelled


async def test_someone_elses_booking_code_looks_exactly_like_an_unknown_code(
    app_ctx: AppContext, db: Sessions
) -> None:
    theirs = await book(app_ctx, phone=OTHER, customer_name="Maria Lopez")
    box = toolbox(app_ctx, phone=CALLER)

    unknown = await box.call("cancel_booking", {"code": "MHZZZZZZ"})
    no_name = await box.call("cancel_booking", {"code": theirs["code"]})
    wrong_name = await box.call("cancel_booking", {"code": theirs["code"], "last_name": "Kim"})
    move = await box.call(
        "reschedule_booking", {"code": theirs["code"], "new_date": "2030-03-17", "new_start_time": "12:00"}
    )
    link = await box.call("send_deposit_link", {"code": theirs["code"], "last_name": "Smith"})
    unknown_link = await box.call("send_deposit_link", {"code": "MHZZZZZZ", "last_name": "Smith"})

    assert not unknown.ok
    assert unknown.message.startswith("I couldn't find a booking with that code for this number.")
    assert same_answer(no_name, unknown)
    assert same_answer(wrong_name, unknown)
    assert same_answer(link, unknown_link)
    assert not move.ok
    assert move.message == unknown.message
    assert move.error == unknown.error
    row = await booking_row(db, theirs["code"])
    assert (row.status, row.event_date, row.reschedule_count) == (BookingStatus.pending_deposit, DAY, 0)
    assert "Lopez" not in unknown.message + no_name.message + wrong_name.message


async def test_code_and_last_name_on_the_booking_allow_a_change_from_another_phone(
    app_ctx: AppContext, db: Sessions
) -> None:
    theirs = await book(app_ctx, phone=OTHER, customer_name="Maria Lopez")

    result = await toolbox(app_ctx, phone=CALLER).call(
        "cancel_booking", {"code": theirs["code"].lower(), "last_name": " lopez "}
    )

    assert result.ok, result.message
    assert result.data["deposit_refunded"] is False
    assert (await booking_row(db, theirs["code"])).status is BookingStatus.cancelled


async def test_send_deposit_link_texts_the_booking_owner_again(
    app_ctx: AppContext, db: Sessions, fake_twilio: FakeTwilio, run_jobs: RunJobs
) -> None:
    booking = await book(app_ctx)

    result = await toolbox(app_ctx).call("send_deposit_link", {})
    await run_jobs()

    assert result.ok, result.message
    assert result.data["texted"] is True
    assert result.data["deposit"]["payment_url"] == booking["deposit"]["payment_url"]
    assert result.message.startswith(
        f"I've texted you the link for the $100 deposit on booking {booking['code']}"
    )
    texts = [m for m in fake_twilio.messages if m["to"] == CALLER]
    assert len(texts) == 2  # the first link, and this one
    assert all(booking["deposit"]["payment_url"] in t["body"] for t in texts)


# -- loyalty, waitlist, text preferences ---------------------------------------------


async def test_get_loyalty_reads_only_the_callers_own_points(app_ctx: AppContext, db: Sessions) -> None:
    async with unit_of_work(db) as session:
        await seed_demo_customers(session, now=NOW)

    result = await toolbox(app_ctx, phone=CALLER).call("get_loyalty", {"include_history": True})
    stranger = await toolbox(app_ctx, phone="+14085550999").call("get_loyalty", {})

    assert result.ok
    assert (result.data["points"], result.data["tier"]) == (600, "bronze")
    assert (result.data["next_tier"], result.data["points_to_next_tier"]) == ("silver", 400)
    assert result.data["redeemable_value"] == 60
    assert [line["points"] for line in result.data["history"]] == [600]
    assert result.message == (
        "You have 600 points at bronze tier, worth $60 off a booking. "
        "You need 400 more lifetime points to reach silver."
    )
    assert stranger.ok
    assert stranger.data["points"] == 0
    assert stranger.message.startswith("There are no Hibachi Rewards points on this number yet.")


async def test_join_waitlist_of_a_full_slot_once(app_ctx: AppContext, db: Sessions) -> None:
    for phone in ("+19165550201", "+19165550202"):
        await book(app_ctx, phone=phone, location="sacramento")
    box = toolbox(app_ctx, location="sacramento")
    args = {
        "event_date": DAY.isoformat(),
        "start_time": "18:00",
        "party_size": 14,
        "customer_name": "Alex Kim",
    }

    joined = await box.call("join_waitlist", args)
    again = await box.call("join_waitlist", args)
    open_slot = await box.call("join_waitlist", {**args, "start_time": "12:00"})

    assert joined.ok
    assert again.ok
    assert joined.data["created"] is True
    assert again.data["created"] is False
    assert joined.data["entry"]["start_time"] == "18:00"
    assert joined.message.startswith("You're on the waitlist for Saturday, March 16 at 6 pm.")
    assert again.message.startswith("You're already on the waitlist")
    assert not open_slot.ok
    assert open_slot.error == "SlotHasRoom"
    assert await count(db, WaitlistEntry) == 1


async def test_text_preferences_stop_and_start_all_texts_and_set_marketing(
    app_ctx: AppContext, db: Sessions
) -> None:
    box = toolbox(app_ctx)

    marketing = await box.call("set_text_preferences", {"marketing": True})
    stop = await box.call("set_text_preferences", {"all_texts": False})
    booked_while_stopped = await box.call("create_booking", booking_args())
    start = await box.call("set_text_preferences", {"all_texts": True})
    nothing = await box.call("set_text_preferences", {})

    assert marketing.ok
    assert marketing.data["marketing"] is True
    assert stop.ok
    assert stop.data == {"all_texts": False, "booking_texts": False, "marketing": False}
    assert "START" in stop.message
    assert booked_while_stopped.ok
    assert booked_while_stopped.data["deposit_link_texted"] is False
    assert "opted out" in booked_while_stopped.message
    assert start.ok
    assert start.data == {"all_texts": True, "booking_texts": True, "marketing": True}
    assert not nothing.ok
    async with db() as session:
        customer = await session.scalar(select(Customer).where(Customer.phone == CALLER))
        [deposit_text] = await session.scalars(
            select(OutboundMessage).where(OutboundMessage.template == "deposit_link")
        )
    assert customer is not None
    assert customer.sms_marketing is True
    assert customer.opted_out_at is None
    assert deposit_text.error == "recipient opted out (STOP)"


# -- transfers -----------------------------------------------------------------------


async def test_transfer_in_staff_hours_connects_and_texts_staff_a_summary(
    app_ctx: AppContext, db: Sessions, fake_twilio: FakeTwilio, run_jobs: RunJobs
) -> None:
    conversation_id = await new_conversation(db)
    box = toolbox(app_ctx, conversation_id=conversation_id)
    summary = "Alex Kim wants a 70-guest wedding on March 16. Card 4111 1111 1111 1111 was offered; refused."

    result = await box.call("transfer_to_staff", {"reason": "large_party", "summary": summary})
    again = await box.call("transfer_to_staff", {"reason": "large_party", "summary": summary})
    await run_jobs()

    assert result.ok
    assert result.effect is Effect.transfer
    assert result.message == "I'm passing you to our team now; they have a summary of our conversation."
    assert result.data["outcome"] == "connected"
    assert result.data["staff_phone"] == STAFF_LINE
    assert "callback_by" not in result.data
    assert again.data["transfer_id"] == result.data["transfer_id"]
    async with db() as session:
        [transfer] = await session.scalars(select(Transfer))
    assert transfer.outcome is TransferOutcome.connected
    assert transfer.conversation_id == conversation_id
    assert transfer.outbound_message_id is not None
    assert "4111" not in transfer.summary
    [text] = [m for m in fake_twilio.messages if m["to"] == STAFF_LINE]
    assert CALLER in text["body"]
    assert "70-guest wedding" in text["body"]
    assert "4111" not in text["body"]


async def test_transfer_after_hours_takes_a_message_and_promises_a_morning_call_back(
    app_ctx: AppContext, db: Sessions, fake_twilio: FakeTwilio, run_jobs: RunJobs
) -> None:
    conversation_id = await new_conversation(db)
    box = toolbox(app_ctx, conversation_id=conversation_id, now=AFTER_HOURS)

    result = await box.call("transfer_to_staff", {"reason": "complaint", "summary": "Chef arrived late."})
    await run_jobs()

    assert result.ok
    assert result.effect is None  # nobody to dial: the channel must not connect the call
    assert result.data["outcome"] == "message_taken"
    assert result.data["callback_by"] == "2030-03-05T10:00:00-08:00"
    assert result.message == (
        "Our team is available 9 am to 9 pm. I've passed your message on and someone will call you "
        "back by 10 am tomorrow."
    )
    async with db() as session:
        [transfer] = await session.scalars(select(Transfer))
    assert transfer.outcome is TransferOutcome.message_taken
    [text] = [m for m in fake_twilio.messages if m["to"] == STAFF_LINE]
    assert "call back by 10 am Tue Mar 5" in text["body"]
    assert "Chef arrived late." in text["body"]


# -- the registry --------------------------------------------------------------------


def test_every_tool_is_registered_once_with_a_stable_schema() -> None:
    names = [tool.name for tool in ALL_TOOLS]
    assert sorted(names) == sorted(
        {
            "faq_search",
            "check_availability",
            "find_open_slots",
            "get_quote",
            "create_booking",
            "list_my_bookings",
            "reschedule_booking",
            "cancel_booking",
            "send_deposit_link",
            "get_loyalty",
            "join_waitlist",
            "set_text_preferences",
            "transfer_to_staff",
        }
    )
    for tool in ALL_TOOLS:
        assert tool.openai_schema() == tool.openai_schema()
        assert len(tool.description) > 80
