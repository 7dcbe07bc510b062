"""Text preferences of the caller's number: offers by text, and STOP / START for all texts."""

from __future__ import annotations

from agent.tools.base import ToolContext, ToolResult
from agent.tools.common import actor, make_tool
from agent.tools.identity import require_caller_phone
from agent.tools.schemas import TextPreferences
from booking_tools.admin.service import audit
from booking_tools.customers import service as customers
from booking_tools.customers.schemas import CustomerUpdate
from hibachi.db import unit_of_work


async def run_set_text_preferences(ctx: ToolContext, args: TextPreferences) -> ToolResult:
    if args.marketing is None and args.all_texts is None:
        return ToolResult(
            ok=False,
            message="Do you want to change offers by text, or stop or restart all texts from us?",
            error="InvalidArguments",
        )
    phone = require_caller_phone(ctx)
    async with unit_of_work(ctx.app.sessions, queue=ctx.app.queue) as session:
        customer = await customers.get_or_create_customer(session, phone=phone)
        before = customers.snapshot(customer)
        actions = []
        if args.all_texts is not None:
            await customers.set_opt_out(session, phone=phone, opted_out=not args.all_texts, now=ctx.now)
            actions.append("customer.opt_in" if args.all_texts else "customer.opt_out")
        if args.marketing is not None:
            await customers.update_customer(
                session, customer=customer, data=CustomerUpdate(sms_marketing=args.marketing)
            )
            actions.append("customer.update")
        for action in actions:
            await audit(
                session,
                actor=actor(ctx),
                action=action,
                entity="customer",
                entity_id=customer.id,
                before=before,
                after=customers.snapshot(customer),
            )
        data = {
            "all_texts": not customer.opted_out,
            "booking_texts": customer.sms_transactional and not customer.opted_out,
            "marketing": customer.sms_marketing and not customer.opted_out,
        }
    parts = []
    if args.all_texts is False:
        parts.append(
            "Done: we won't text this number anymore, including deposit links and event reminders. "
            "Text START any time to turn texts back on."
        )
    elif args.all_texts is True:
        parts.append("Done: texts from us are back on for this number.")
    if args.marketing is True:
        parts.append(
            "You'll get our offers by text once texts are back on."
            if customer.opted_out
            else "You're signed up for our offers by text; reply STOP any time to end all texts."
        )
    elif args.marketing is False:
        parts.append(
            "You won't get offers by text."
            if customer.opted_out
            else "You won't get offers by text; texts about your bookings still come."
        )
    return ToolResult(ok=True, message=" ".join(parts), data=data)


set_text_preferences = make_tool(
    name="set_text_preferences",
    description=(
        "Change which texts the phone number of this conversation gets: marketing true/false opts in "
        "or out of offers by text (booking texts keep coming); all_texts false stops every text, "
        "including deposit links and reminders (like replying STOP), and all_texts true starts them "
        "again (like START). Use it only when the customer asks. 'Cancel my booking' is not a request "
        "to stop texts. data: all_texts, booking_texts, marketing (what this number gets now)."
    ),
    args=TextPreferences,
    run=run_set_text_preferences,
)
