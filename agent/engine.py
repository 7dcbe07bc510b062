"""The conversation engine shared by every channel.

A customer message is first *accepted*: written to PostgreSQL (idempotent on the
provider's message id) in its conversation, so it survives any crash. It is then
*drained*: under a per-conversation Redis lock, pending messages are answered one at
a time in arrival order, so two texts sent together never interleave, and whichever
worker holds the lock may take the next message (the brain's state is in Redis).

Each turn: keywords (STOP/START/HELP) are handled without the brain; otherwise the
brain answers with tools, and the reply, tool calls, sentiment and cost are written
in one transaction. An SMS reply leaves either in the webhook's TwiML (when the
webhook is still waiting for it) or through the outbox by REST, never both.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import LockError
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from agent import keywords, sentiment
from agent.aio import aclose_if_closable
from agent.brain import Brain, BrainRequest, Channel, ChatTurn, ModelUsage, Role, TextDelta
from agent.cost import Charge, PriceTable
from agent.keywords import Keyword
from agent.models import Conversation, CostLine, InboundStatus, Message, ToolCall
from agent.state import conversation_lock_name, load_state, save_state
from agent.tools.base import Effect, Tool, ToolBox, ToolCallRecord, ToolContext
from agent.tools.common import redact_cards
from booking_tools.customers.models import Customer
from booking_tools.customers.service import find_customer, set_opt_out
from booking_tools.locations.models import Location
from booking_tools.locations.service import location_for_agent_phone
from booking_tools.messaging.service import queue_text
from hibachi.context import AppContext, utcnow
from hibachi.db import unit_of_work
from hibachi.errors import RuleViolation
from telephony.sms_segments import count_segments

log = logging.getLogger(__name__)

# A text thread idle this long starts a new conversation.
CONVERSATION_IDLE = timedelta(hours=12)
HISTORY_MESSAGES = 20
EARLIER_SENTIMENTS = 5  # the caller's latest scored messages a turn's sentiment trend looks at
LOCK_TTL_SECONDS = 120
LOCK_WAIT_SECONDS = 60
SORRY = "Sorry, something went wrong on our side. Please try again, or call our team at {staff}."


class UnknownAgentNumber(RuleViolation):
    pass


@dataclass(slots=True, frozen=True)
class InboundText:
    """A text from a customer, as the provider delivered it."""

    provider: str
    customer_phone: str
    agent_phone: str
    text: str
    provider_message_id: str | None = None
    segments: int = 1


@dataclass(slots=True, frozen=True)
class Accepted:
    conversation_id: uuid.UUID
    message_id: int
    duplicate: bool


@dataclass(slots=True, frozen=True)
class AgentReply:
    conversation_id: uuid.UUID
    reply_to_id: int
    text: str
    delivery: str | None
    effect: Effect | None = None


@dataclass(slots=True)
class ReplyWaiter:
    """A webhook waiting to put the reply to one message in its response.

    `claimed` is set, synchronously, when the engine decides the reply goes out this
    way; from then on the webhook must wait for it whatever its deadline.
    """

    future: asyncio.Future[str]
    claimed: bool = False


@dataclass(slots=True)
class TurnOutcome:
    text: str
    effect: Effect | None
    calls: list[ToolCallRecord] = field(default_factory=list)
    usages: list[ModelUsage] = field(default_factory=list)
    brain: str | None = None


class ConversationEngine:
    """Accepts customer messages and answers them in order, one conversation at a time."""

    def __init__(
        self,
        app: AppContext,
        *,
        brain: Brain,
        tools: Sequence[Tool],
        prices: PriceTable | None = None,
        clock: Callable[[], datetime] = utcnow,
        turn_timeout: float = 30.0,
        scorer: sentiment.SentimentScorer | None = None,
    ) -> None:
        self.app = app
        self.brain = brain
        self.tools = tools
        self.prices = prices or PriceTable()
        self.clock = clock
        self.turn_timeout = turn_timeout
        self.scorer = scorer or sentiment.VaderScorer()
        self._waiters: dict[int, ReplyWaiter] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- accepting -------------------------------------------------------------------------

    async def accept_text(self, inbound: InboundText) -> Accepted:
        """Store a customer text in its conversation; a repeated provider id is a no-op."""
        now = self.clock()
        async with unit_of_work(self.app.sessions) as session:
            location = await location_for_agent_phone(session, phone=inbound.agent_phone)
            if location is None:
                raise UnknownAgentNumber(f"{inbound.agent_phone} is not one of our agent numbers")
            if inbound.provider_message_id:
                existing = await session.scalar(
                    select(Message).where(
                        Message.provider == inbound.provider,
                        Message.provider_message_id == inbound.provider_message_id,
                    )
                )
                if existing is not None:
                    return Accepted(existing.conversation_id, existing.id, duplicate=True)
            conversation = await self._open_text_conversation(session, inbound, location, now)
            message = Message(
                conversation_id=conversation.id,
                role=Role.customer,
                text=redact_cards(inbound.text) or "",  # card numbers are never stored
                created_at=now,
                provider=inbound.provider,
                provider_message_id=inbound.provider_message_id,
                status=InboundStatus.received,
                marks={},
            )
            session.add(message)
            conversation.last_activity_at = now
            await session.flush()
            if inbound.provider != "cli":
                self.charge(
                    session,
                    conversation.id,
                    message.id,
                    self.prices.sms(provider=f"{inbound.provider}-inbound", segments=inbound.segments),
                )
            return Accepted(conversation.id, message.id, duplicate=False)

    async def _open_text_conversation(
        self, session: AsyncSession, inbound: InboundText, location: Location, now: datetime
    ) -> Conversation:
        # Serialise first texts from one number so they share one conversation.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"sms:{inbound.customer_phone}:{inbound.agent_phone}"},
        )
        conversation = await session.scalar(
            select(Conversation)
            .where(
                Conversation.channel == Channel.sms,
                Conversation.customer_phone == inbound.customer_phone,
                Conversation.agent_phone == inbound.agent_phone,
                Conversation.last_activity_at > now - CONVERSATION_IDLE,
            )
            .order_by(Conversation.last_activity_at.desc())
            .limit(1)
        )
        if conversation is None:
            conversation = Conversation(
                channel=Channel.sms,
                provider=inbound.provider,
                customer_phone=inbound.customer_phone,
                agent_phone=inbound.agent_phone,
                location_slug=location.slug,
                last_activity_at=now,
            )
            session.add(conversation)
            await session.flush()
        return conversation

    # ---- waiting for a reply (SMS webhooks) --------------------------------------------------

    async def wait_for_reply(self, message_id: int, wait_seconds: float) -> str | None:
        """The reply to `message_id` if ready within `wait_seconds`; None means it goes by REST."""
        if wait_seconds <= 0:
            return None
        waiter = ReplyWaiter(asyncio.get_running_loop().create_future())
        self._waiters[message_id] = waiter
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), wait_seconds)
        except TimeoutError:
            if not waiter.claimed:
                return None
            try:
                return await waiter.future
            except Exception:
                return None
        except Exception:
            return None
        finally:
            self._waiters.pop(message_id, None)

    # ---- draining --------------------------------------------------------------------------

    def spawn_drain(self, conversation_id: uuid.UUID) -> asyncio.Task[list[AgentReply]]:
        """Answer pending messages in the background (the task is owned by the engine)."""
        task = asyncio.create_task(self.drain(conversation_id), name=f"drain:{conversation_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    async def drain(self, conversation_id: uuid.UUID) -> list[AgentReply]:
        """Answer every pending message of the conversation, oldest first, holding its lock."""
        lock = self.app.redis.lock(
            conversation_lock_name(conversation_id),
            timeout=LOCK_TTL_SECONDS,
            blocking_timeout=LOCK_WAIT_SECONDS,
        )
        replies: list[AgentReply] = []
        try:
            async with lock:
                while (pending := await self._next_pending(conversation_id)) is not None:
                    conversation, message = pending
                    reply = await self._answer(conversation, message)
                    if reply is not None:
                        replies.append(reply)
        except LockError:
            # Another worker held the conversation too long; the inbound sweeper retries.
            log.warning("conversation %s is busy; leaving its messages to the sweeper", conversation_id)
        return replies

    def tool_context(
        self,
        *,
        conversation_id: uuid.UUID,
        channel: Channel,
        customer_phone: str,
        location_slug: str,
        now: datetime,
    ) -> ToolContext:
        """What every tool call of one turn runs as: the caller (by carrier number), where, when."""
        return ToolContext(
            app=self.app,
            conversation_id=conversation_id,
            channel=channel.value,
            customer_phone=customer_phone,
            location_slug=location_slug,
            now=now,
        )

    async def idle(self) -> None:
        """Wait until no background turn is running."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self) -> None:
        """Let in-flight turns finish (they hold customer replies), then close the model clients."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.turn_timeout)
        await aclose_if_closable(self.brain)
        await aclose_if_closable(self.scorer)

    async def _next_pending(self, conversation_id: uuid.UUID) -> tuple[Conversation, Message] | None:
        async with self.app.sessions() as session:
            message = await session.scalar(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.status == InboundStatus.received)
                .order_by(Message.id)
                .limit(1)
            )
            if message is None:
                return None
            conversation = await session.get_one(Conversation, conversation_id)
            return conversation, message

    # ---- one turn --------------------------------------------------------------------------

    async def _answer(self, conversation: Conversation, message: Message) -> AgentReply | None:
        now = self.clock()
        keyword = keywords.classify(message.text) if conversation.channel is Channel.sms else None
        async with self.app.sessions() as session:
            location = await location_for_agent_phone(session, phone=conversation.agent_phone)
            customer = await find_customer(session, phone=conversation.customer_phone)
            history = await self.history(session, conversation.id, before=message.id)
            earlier_scores = await self.earlier_sentiments(session, conversation.id, before=message.id)
        assert location is not None  # accepted messages always have a known agent number
        scored = await self.scorer.score(message.text)
        score = scored.value

        if keyword is not None:
            outcome = await self._keyword_turn(keyword, conversation, location, now)
        elif customer is not None and customer.opted_out:
            # Opted-out numbers get no texts until START; the message is still kept.
            outcome = TurnOutcome(text="", effect=None)
        else:
            outcome = await self._brain_turn(
                conversation,
                message,
                history=history,
                customer=customer,
                score=score,
                offer_human=sentiment.sharp_negative_trend([*earlier_scores, score]),
                location=location,
                now=now,
            )
        if scored.usage is not None:
            outcome.usages.append(scored.usage)
        return await self._record(conversation, message, outcome, score=score, location=location, now=now)

    async def _keyword_turn(
        self, keyword: Keyword, conversation: Conversation, location: Location, now: datetime
    ) -> TurnOutcome:
        async with unit_of_work(self.app.sessions) as session:
            if keyword is Keyword.stop:
                await set_opt_out(session, phone=conversation.customer_phone, opted_out=True, now=now)
                return TurnOutcome(text="", effect=None, brain="keywords")
            if keyword is Keyword.start:
                await set_opt_out(session, phone=conversation.customer_phone, opted_out=False, now=now)
                return TurnOutcome(text=keywords.start_text(), effect=None, brain="keywords")
        return TurnOutcome(text=keywords.help_text(location), effect=None, brain="keywords")

    async def _brain_turn(
        self,
        conversation: Conversation,
        message: Message,
        *,
        history: list[ChatTurn],
        customer: Customer | None,
        score: float,
        offer_human: bool,
        location: Location,
        now: datetime,
    ) -> TurnOutcome:
        state = await load_state(self.app.redis, conversation.id)
        request = BrainRequest(
            conversation_id=conversation.id,
            channel=conversation.channel,
            text=message.text,
            history=history,
            now=now,
            location_slug=location.slug,
            customer_phone=conversation.customer_phone,
            customer_name=customer.name if customer else None,
            state=state,
            sentiment=score,
            offer_human=offer_human,
        )
        toolbox = ToolBox(
            self.tool_context(
                conversation_id=conversation.id,
                channel=conversation.channel,
                customer_phone=conversation.customer_phone,
                location_slug=location.slug,
                now=now,
            ),
            self.tools,
        )
        parts: list[str] = []
        usages: list[ModelUsage] = []
        try:
            async with asyncio.timeout(self.turn_timeout):
                async for event in self.brain.respond(request, toolbox):
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
                    else:
                        usages.append(event)
        except Exception:
            log.exception("brain failed on conversation %s", conversation.id)
            if not parts:
                parts = [SORRY.format(staff=location.staff_phone)]
        await save_state(self.app.redis, conversation.id, request.state)
        effect = next((call.result.effect for call in reversed(toolbox.calls) if call.result.effect), None)
        return TurnOutcome(
            text="".join(parts).strip(),
            effect=effect,
            calls=toolbox.calls,
            usages=usages,
            brain=self.brain.name,
        )

    async def _record(
        self,
        conversation: Conversation,
        message: Message,
        outcome: TurnOutcome,
        *,
        score: float,
        location: Location,
        now: datetime,
    ) -> AgentReply | None:
        try:
            return await self._write_turn(
                conversation, message, outcome, score=score, location=location, now=now
            )
        except BaseException as exc:
            waiter = self._waiters.get(message.id)
            if waiter is not None and waiter.claimed and not waiter.future.done():
                waiter.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            raise

    async def _write_turn(
        self,
        conversation: Conversation,
        message: Message,
        outcome: TurnOutcome,
        *,
        score: float,
        location: Location,
        now: datetime,
    ) -> AgentReply | None:
        waiter: ReplyWaiter | None = None
        async with unit_of_work(self.app.sessions, queue=self.app.queue) as session:
            inbound = await session.get_one(Message, message.id, with_for_update=True)
            if inbound.status is not InboundStatus.received:
                return None  # answered meanwhile (a crashed worker's turn recovered twice)
            inbound.status = InboundStatus.answered
            inbound.sentiment = score
            live = await session.get_one(Conversation, conversation.id)
            live.last_activity_at = now
            live.brain = outcome.brain or live.brain
            reply_id: int | None = None
            delivery: str | None = None
            if outcome.text:
                delivery, waiter, outbound_id = await self._deliver(
                    session, conversation, message, outcome.text, location
                )
                reply = Message(
                    conversation_id=conversation.id,
                    role=Role.agent,
                    text=outcome.text,
                    created_at=self.clock(),
                    reply_to_id=message.id,
                    brain=outcome.brain,
                    delivery=delivery,
                    outbound_message_id=outbound_id,
                    marks={},
                )
                session.add(reply)
                await session.flush()
                reply_id = reply.id
                if delivery in ("twiml", "rest"):
                    self.charge(
                        session,
                        conversation.id,
                        reply_id,
                        self.prices.sms(
                            provider=conversation.provider, segments=count_segments(outcome.text)
                        ),
                    )
            for call in outcome.calls:
                session.add(tool_call_row(conversation.id, reply_id, call))
                tokens = call.result.data.get("embedding_tokens")
                if isinstance(tokens, int) and tokens:
                    model = str(call.result.data.get("embedding_model") or "local")
                    self.charge(
                        session, conversation.id, reply_id, self.prices.embedding(model=model, tokens=tokens)
                    )
            for usage in outcome.usages:
                self.charge(session, conversation.id, reply_id, self.prices.llm_usage(usage))
        if waiter is not None and not waiter.future.done():
            waiter.future.set_result(outcome.text)
        if not outcome.text:
            return None
        return AgentReply(conversation.id, message.id, outcome.text, delivery, outcome.effect)

    async def _deliver(
        self,
        session: AsyncSession,
        conversation: Conversation,
        message: Message,
        body: str,
        location: Location,
    ) -> tuple[str, ReplyWaiter | None, uuid.UUID | None]:
        """Decide how the reply leaves; queue it in the outbox unless a webhook takes it."""
        if conversation.provider == "cli" or conversation.channel is not Channel.sms:
            return conversation.provider, None, None
        customer = await find_customer(session, phone=conversation.customer_phone)
        waiter = self._waiters.get(message.id)
        if waiter is not None and not waiter.future.done() and not (customer and customer.opted_out):
            waiter.claimed = True
            return "twiml", waiter, None
        outbound = await queue_text(
            session,
            location=location,
            to_phone=conversation.customer_phone,
            body=body,
            template="agent_reply",
            customer=customer,
            dedupe_key=f"agent-reply:{message.id}",
        )
        return "rest", None, outbound.id

    async def history(
        self, session: AsyncSession, conversation_id: uuid.UUID, *, before: int
    ) -> list[ChatTurn]:
        rows = await session.execute(
            select(Message.role, Message.text)
            .where(Message.conversation_id == conversation_id, Message.id < before)
            .order_by(Message.id.desc())
            .limit(HISTORY_MESSAGES)
        )
        return [ChatTurn(role=role, text=body) for role, body in reversed(rows.all())]

    async def earlier_sentiments(
        self, session: AsyncSession, conversation_id: uuid.UUID, *, before: int
    ) -> list[float]:
        rows = await session.scalars(
            select(Message.sentiment)
            .where(
                Message.conversation_id == conversation_id,
                Message.id < before,
                Message.role == Role.customer,
                Message.sentiment.is_not(None),
            )
            .order_by(Message.id.desc())
            .limit(EARLIER_SENTIMENTS)
        )
        return [float(s) for s in reversed(rows.all()) if s is not None]

    @staticmethod
    def charge(
        session: AsyncSession, conversation_id: uuid.UUID, message_id: int | None, charge: Charge
    ) -> None:
        session.add(CostLine(**cost_row(conversation_id, message_id, charge)))


def cost_row(conversation_id: uuid.UUID, message_id: int | None, charge: Charge) -> dict[str, Any]:
    """A `CostLine`'s column values (for `insert(CostLine)` where no ORM object is wanted)."""
    return {
        "conversation_id": conversation_id,
        "message_id": message_id,
        "kind": charge.kind,
        "item": charge.item,
        "quantity": charge.quantity,
        "prompt_tokens": charge.prompt_tokens,
        "cached_tokens": charge.cached_tokens,
        "completion_tokens": charge.completion_tokens,
        "usd": charge.usd,
    }


def tool_call_row(conversation_id: uuid.UUID, message_id: int | None, call: ToolCallRecord) -> ToolCall:
    result = call.result
    return ToolCall(
        conversation_id=conversation_id,
        message_id=message_id,
        name=call.name,
        arguments=call.arguments,
        ok=result.ok,
        error=result.error,
        result={"message": result.message, "data": result.data, "effect": result.effect},
        latency_ms=call.latency_ms,
        created_at=call.started_at,
    )


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("conversation task %s failed", task.get_name(), exc_info=task.exception())


async def pending_conversations(app: AppContext, *, older_than: timedelta, now: datetime) -> list[uuid.UUID]:
    """Conversations with customer messages left unanswered (a worker died mid-turn)."""
    async with app.sessions() as session:
        rows = await session.scalars(
            select(Message.conversation_id)
            .where(Message.status == InboundStatus.received, Message.created_at < now - older_than)
            .group_by(Message.conversation_id)
            .order_by(func.min(Message.id))
            .limit(100)
        )
        return list(rows)
