"""The conversation engine's voice API: one conversation per phone call, turns streamed.

A call is a conversation on the voice channel keyed by the provider's call id
(`external_id`, the Twilio CallSid), so a reconnecting stream finds the same one.
Each caller turn is written before the brain runs (a dropped call keeps what the
caller said); the brain's text streams out as it is produced, and the agent's
message, tool calls and model cost are written when it finishes, or with whatever
exists if the call drops mid-turn. What the caller actually heard (barge-in) and the
turn's latency marks are written afterwards with `annotate`. Ending the call writes
audio cost: STT seconds, TTS characters and telephony minutes.

What a draft reads (the history, the caller's earlier sentiments, their name, the
brain's state) is read from the database and Redis once per call and then kept up to
date by the call's own writes (`CallMemory`), so a turn's model request waits on no read.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from agent import prompts, sentiment
from agent.aio import free_when_cancelled
from agent.brain import BrainRequest, Channel, ChatTurn, ModelUsage, Role, TextDelta
from agent.cost import Charge
from agent.engine import (
    EARLIER_SENTIMENTS,
    HISTORY_MESSAGES,
    SORRY,
    ConversationEngine,
    UnknownAgentNumber,
    cost_row,
    tool_call_row,
)
from agent.models import Conversation, ConversationStatus, CostLine, Message
from agent.state import load_state, save_state
from agent.tools.base import Effect, Tool, ToolBox, ToolCallRecord, ToolContext, ToolResult
from agent.tools.common import redact_cards
from booking_tools.customers.service import find_customer
from booking_tools.locations.service import location_for_agent_phone
from hibachi.db import new_id, table_of, unit_of_work

log = logging.getLogger(__name__)

DELIVERY = "voice"


@dataclass(slots=True, frozen=True)
class VoiceCall:
    """A live call's conversation and the location it reached."""

    conversation_id: uuid.UUID
    call_sid: str
    provider: str
    customer_phone: str
    agent_phone: str
    location_slug: str
    location_name: str
    timezone: str
    staff_phone: str
    started_at: datetime


@dataclass(slots=True)
class VoiceTurnResult:
    """What one caller turn produced; `transfer_to` is the staff line when a tool asked to connect."""

    customer_message_id: int
    agent_message_id: int | None
    text: str
    effect: Effect | None
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    transfer_to: str | None = None


@dataclass(slots=True, frozen=True)
class CallUsage:
    """Metered audio for the cost ledger (engine names as in the price table)."""

    stt_engine: str
    stt_seconds: float
    tts_engine: str
    tts_characters: int
    call_seconds: float


LATEST = 2**63 - 1  # "before" every message id: the whole history so far


@dataclass(slots=True)
class CallMemory:
    """What a draft needs from the database about a live call, kept by the call's own writes.

    Read once (`VoiceCalls.recall`); every message this process writes to the call is
    appended here after its commit. A write the memory cannot follow (a barge-in
    rewriting what the agent said, a tool that may have changed the customer) makes
    `VoiceCalls` forget it, and the next draft reads the database again.
    """

    history: list[ChatTurn]
    sentiments: list[float]  # the caller's earlier messages' scores, oldest first
    customer_name: str | None
    state: dict[str, Any]  # the brain's state as last saved (a draft works on a copy)

    def add(self, role: Role, text: str, score: float | None = None) -> None:
        self.history.append(ChatTurn(role=role, text=text))
        del self.history[:-HISTORY_MESSAGES]
        if score is not None:
            self.sentiments.append(score)
            del self.sentiments[:-EARLIER_SENTIMENTS]


class VoiceCalls:
    """Voice calls on top of a `ConversationEngine` (its brain, tools, prices and clock)."""

    def __init__(self, engine: ConversationEngine) -> None:
        self.engine = engine
        self.app = engine.app
        self._memory: dict[uuid.UUID, CallMemory] = {}
        self._writes: dict[uuid.UUID, int] = {}  # per live call: writes so far (see `recall`)
        # Per live call: what discarded drafts spent, written with the next reply or the call's end.
        self._unbilled: dict[uuid.UUID, list[Charge]] = {}

    async def recall(self, call: VoiceCall) -> CallMemory:
        """The call's history, sentiments, customer name and brain state: from memory, or read once.

        A read that a write of this call overtook is used but not kept (it may miss that write).
        """
        memory = self._memory.get(call.conversation_id)
        if memory is not None:
            return memory
        writes = self._writes.get(call.conversation_id, 0)
        engine = self.engine
        async with self.app.sessions() as session:
            history = await engine.history(session, call.conversation_id, before=LATEST)
            earlier = await engine.earlier_sentiments(session, call.conversation_id, before=LATEST)
            customer = await find_customer(session, phone=call.customer_phone)
        state = await load_state(self.app.redis, call.conversation_id)
        memory = CallMemory(history, earlier, customer.name if customer else None, state)
        if self._writes.get(call.conversation_id, 0) == writes:  # no write landed during the read
            self._memory[call.conversation_id] = memory
        return memory

    def _remember(self, call: VoiceCall, role: Role, text: str, score: float | None = None) -> None:
        self._writes[call.conversation_id] = self._writes.get(call.conversation_id, 0) + 1
        memory = self._memory.get(call.conversation_id)
        if memory is not None:
            memory.add(role, text, score)

    def _remember_state(self, call: VoiceCall, state: dict[str, Any]) -> None:
        memory = self._memory.get(call.conversation_id)
        if memory is not None:
            memory.state = copy.deepcopy(state)

    def _forget(self, conversation_id: uuid.UUID) -> None:
        self._writes[conversation_id] = self._writes.get(conversation_id, 0) + 1
        self._memory.pop(conversation_id, None)

    async def start_call(
        self, *, call_sid: str, customer_phone: str, agent_phone: str, provider: str = "twilio"
    ) -> VoiceCall:
        """The call's conversation, created on first sight of `call_sid` (idempotent)."""
        now = self.engine.clock()
        async with unit_of_work(self.app.sessions) as session:
            location = await location_for_agent_phone(session, phone=agent_phone)
            if location is None:
                raise UnknownAgentNumber(f"{agent_phone} is not one of our agent numbers")
            await session.execute(
                insert(Conversation)
                .values(
                    id=new_id(),
                    channel=Channel.voice,
                    provider=provider,
                    customer_phone=customer_phone[:20],
                    agent_phone=agent_phone,
                    location_slug=location.slug,
                    status=ConversationStatus.open,
                    external_id=call_sid,
                    last_activity_at=now,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["external_id"])
            )
            conversation = await session.scalar(
                select(Conversation).where(Conversation.external_id == call_sid)
            )
            assert conversation is not None
            return VoiceCall(
                conversation_id=conversation.id,
                call_sid=call_sid,
                provider=conversation.provider,
                customer_phone=conversation.customer_phone,
                agent_phone=agent_phone,
                location_slug=location.slug,
                location_name=location.name,
                timezone=location.timezone,
                staff_phone=location.staff_phone,
                started_at=conversation.created_at or now,
            )

    async def say(self, call: VoiceCall, text: str, *, marks: dict[str, Any] | None = None) -> int:
        """Record something the agent said on its own (greeting, re-prompt, goodbye)."""
        now = self.engine.clock()
        async with unit_of_work(self.app.sessions) as session:
            message_id = await _add_message(
                session,
                conversation_id=call.conversation_id,
                role=Role.agent,
                text=text,
                created_at=now,
                delivery=DELIVERY,
                marks=marks or {},
            )
            await _touch(session, call.conversation_id, now)
        self._remember(call, Role.agent, text)
        return message_id

    async def turn(
        self,
        call: VoiceCall,
        text: str,
        *,
        on_text: Callable[[str], None],
        on_done: Callable[[], None] | None = None,
        marks: dict[str, Any] | None = None,
    ) -> VoiceTurnResult:
        """Answer one caller utterance, passing each piece of the reply to `on_text` as it streams.

        `on_done` is called when the reply's text is complete (before it is written down).
        The caller's words are committed before any tool with effects runs (the model
        request does not wait for that write). If the task is cancelled (the caller hung
        up), the text produced so far is written, marked truncated, before re-raising.
        """
        draft = TurnDraft(self, call, text)  # thinks while `confirm` writes the caller's words
        return await draft.confirm(text, on_text=on_text, on_done=on_done, marks=marks)

    def draft(self, call: VoiceCall, text: str) -> TurnDraft:
        """Start thinking about `text` before it is final (pre-emptive generation, see `TurnDraft`)."""
        return TurnDraft(self, call, text)

    async def _write_customer(self, call: VoiceCall, text: str) -> int:
        now = self.engine.clock()
        written, score = redact_cards(text) or "", sentiment.score(text)
        async with unit_of_work(self.app.sessions) as session:
            inbound_id = await _add_message(
                session,
                conversation_id=call.conversation_id,
                role=Role.customer,
                text=written,
                created_at=now,
                provider=call.provider,
                sentiment=score,
                marks={},
            )
            await _touch(session, call.conversation_id, now)
        self._remember(call, Role.customer, written, score)
        return inbound_id

    async def call_tool(self, call: VoiceCall, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Run one tool outside a brain turn (DTMF 0 -> transfer_to_staff) and record the call."""
        now = self.engine.clock()
        toolbox = ToolBox(self._tool_context(call, now), self.engine.tools)
        result = await toolbox.call(name, arguments)
        async with unit_of_work(self.app.sessions) as session:
            for record in toolbox.calls:
                session.add(tool_call_row(call.conversation_id, None, record))
        return result

    async def annotate(self, message_id: int, *, marks: dict[str, Any], heard: str | None = None) -> None:
        """Add latency marks to an agent message; with `heard`, cut it to what was played (barge-in)."""
        async with unit_of_work(self.app.sessions) as session:
            conn = await session.connection()
            if heard is None:
                result = await conn.execute(_ANNOTATE, {"message": message_id, "new_marks": marks})
            else:
                result = await conn.execute(
                    _ANNOTATE_HEARD, {"message": message_id, "new_marks": marks, "heard": heard}
                )
            conversation_id = result.scalar()
        if heard is not None and conversation_id is not None:
            self._forget(conversation_id)  # the history now holds what was heard (committed)

    async def end_call(self, call: VoiceCall, usage: CallUsage) -> None:
        """Close the conversation and charge the audio (once, however often it is called)."""
        now = self.engine.clock()
        prices = self.engine.prices
        unbilled = self._unbilled.pop(call.conversation_id, [])
        async with self._billing(call, unbilled), unit_of_work(self.app.sessions) as session:
            self._memory.pop(call.conversation_id, None)
            self._writes.pop(call.conversation_id, None)
            ended = await session.scalar(
                update(Conversation)
                .where(Conversation.id == call.conversation_id, Conversation.ended_at.is_(None))
                .values(ended_at=now, status=ConversationStatus.closed, last_activity_at=now)
                .returning(Conversation.id)
            )
            charges: list[Charge] = []  # ended already: the audio was charged then
            if ended is not None:
                charges = [
                    prices.stt(engine=usage.stt_engine, seconds=round(usage.stt_seconds, 3)),
                    prices.tts(engine=usage.tts_engine, characters=usage.tts_characters),
                    prices.voice(provider=call.provider, seconds=round(usage.call_seconds, 3)),
                ]
            await _add_costs(session, call.conversation_id, None, charges, unattached=unbilled)

    def _charge_discarded(self, call: VoiceCall, usages: list[ModelUsage]) -> None:
        """Model tokens a discarded draft spent: charged to the conversation, tied to no message.

        Held until the call's next write (its reply, or its end) rather than a transaction of
        their own: a turn discards ~1.5 drafts on average.
        """
        charges = [self.engine.prices.llm_usage(usage) for usage in usages]
        self._unbilled.setdefault(call.conversation_id, []).extend(charges)

    @contextlib.asynccontextmanager
    async def _billing(self, call: VoiceCall, unbilled: list[Charge]) -> AsyncIterator[None]:
        """Around a write that takes `unbilled`: if it fails, they wait for the next one."""
        try:
            yield
        except BaseException:
            if unbilled:
                self._unbilled.setdefault(call.conversation_id, [])[:0] = unbilled
            raise

    def _tool_context(self, call: VoiceCall, now: datetime) -> ToolContext:
        return self.engine.tool_context(
            conversation_id=call.conversation_id,
            channel=Channel.voice,
            customer_phone=call.customer_phone,
            location_slug=call.location_slug,
            now=now,
        )

    async def _write_reply(
        self,
        call: VoiceCall,
        customer_message_id: int,
        text: str,
        tool_calls: list[ToolCallRecord],
        usages: list[ModelUsage],
        marks: dict[str, Any] | None,
        *,
        truncated: bool,
    ) -> int | None:
        engine = self.engine
        now = engine.clock()
        unbilled = self._unbilled.pop(call.conversation_id, [])
        async with (
            self._billing(call, unbilled),
            unit_of_work(self.app.sessions, queue=self.app.queue) as session,
        ):
            await _touch(session, call.conversation_id, now, brain=engine.brain.name)
            reply_id: int | None = None
            if text:
                reply_id = await _add_message(
                    session,
                    conversation_id=call.conversation_id,
                    role=Role.agent,
                    text=text,
                    created_at=now,
                    reply_to_id=customer_message_id,
                    brain=engine.brain.name,
                    delivery=DELIVERY,
                    truncated=truncated,
                    marks=dict(marks or {}),
                )
            charges = [engine.prices.llm_usage(usage) for usage in usages]
            for record in tool_calls:
                session.add(tool_call_row(call.conversation_id, reply_id, record))
                tokens = record.result.data.get("embedding_tokens")
                if isinstance(tokens, int) and tokens:
                    model = str(record.result.data.get("embedding_model") or "local")
                    charges.append(engine.prices.embedding(model=model, tokens=tokens))
            await _add_costs(session, call.conversation_id, reply_id, charges, unattached=unbilled)
        if any(prompts.has_effects(record.name) for record in tool_calls):
            self._forget(call.conversation_id)  # a booking or a transfer may have changed the customer
        elif text:
            self._remember(call, Role.agent, text)
        return reply_id


# The per-turn writes as Core statements built once at import: each turn pays neither for
# building SQL expressions nor for the ORM's bulk-persistence path (measured on the embedded
# PostgreSQL: ~0.7 against ~1.4 ms of CPU for a message and its conversation's touch).
_messages = table_of(Message)
_conversations = table_of(Conversation)
_cost_lines = table_of(CostLine)

_INSERT_MESSAGE = insert(_messages).returning(_messages.c.id)
_TOUCH = (
    update(_conversations)
    .where(_conversations.c.id == bindparam("conversation"))
    .values(last_activity_at=bindparam("now"))
)
_TOUCH_BRAIN = _TOUCH.values(brain=bindparam("brain_name"))
_INSERT_COSTS = insert(_cost_lines)
_MERGED_MARKS = _messages.c.marks.op("||")(bindparam("new_marks", type_=JSONB))
_ANNOTATE = (
    update(_messages)
    .where(_messages.c.id == bindparam("message"))
    .values(marks=_MERGED_MARKS)
    .returning(_messages.c.conversation_id)
)
# Barge-in: the text becomes what was heard; what was generated is kept in the marks.
_ANNOTATE_HEARD = (
    update(_messages)
    .where(_messages.c.id == bindparam("message"))
    .values(
        marks=_MERGED_MARKS.op("||")(func.jsonb_build_object("generated", _messages.c.text)),
        text=bindparam("heard"),
        truncated=True,
    )
    .returning(_messages.c.conversation_id)
)


async def _add_message(session: AsyncSession, **values: Any) -> int:
    """Insert a message (one statement, no ORM unit of work: this is on every turn); its id."""
    conn = await session.connection()
    return int((await conn.execute(_INSERT_MESSAGE, values)).scalar_one())


async def _touch(
    session: AsyncSession, conversation_id: uuid.UUID, now: datetime, *, brain: str | None = None
) -> None:
    conn = await session.connection()
    if brain is None:
        await conn.execute(_TOUCH, {"conversation": conversation_id, "now": now})
    else:
        await conn.execute(_TOUCH_BRAIN, {"conversation": conversation_id, "now": now, "brain_name": brain})


async def _add_costs(
    session: AsyncSession,
    conversation_id: uuid.UUID,
    message_id: int | None,
    charges: Sequence[Charge],
    *,
    unattached: Sequence[Charge] = (),
) -> None:
    """Cost lines (`unattached` ones tied to no message) in one multi-row INSERT (none: no statement)."""
    rows = [cost_row(conversation_id, message_id, charge) for charge in charges]
    rows += [cost_row(conversation_id, None, charge) for charge in unattached]
    if rows:
        conn = await session.connection()
        await conn.execute(_INSERT_COSTS, rows)


def _transfer_target(tool_calls: list[ToolCallRecord]) -> str | None:
    for record in reversed(tool_calls):
        if record.result.effect is Effect.transfer:
            phone = record.result.data.get("staff_phone")
            return str(phone) if phone else None
    return None


class GatedToolBox(ToolBox):
    """A `ToolBox` whose effectful tools wait until the turn is confirmed.

    Read-only tools (`prompts.READ_ONLY_TOOLS`) run at once; any other tool call parks
    (`held` names it) until `gate` is set, and is simply never run if the draft is
    cancelled while parked.
    """

    def __init__(self, context: ToolContext, tools: list[Tool], gate: asyncio.Event) -> None:
        super().__init__(context, tools)
        self.gate = gate
        self.held: str | None = None

    async def call(self, name: str, arguments: dict[str, Any] | str) -> ToolResult:
        if not self.gate.is_set() and prompts.has_effects(name):
            self.held = name
            await self.gate.wait()
            self.held = None
        return await super().call(name, arguments)


class TurnDraft:
    """One brain turn, possibly started before the caller's words were final.

    Pre-emptive generation: the session starts a draft on a stable interim transcript
    and later either confirms it (`confirm`, the final says the same words) or throws it
    away (`discard`, the caller went on). Until it is confirmed a draft has no effects
    anywhere:

    - nothing is written: not the caller's message, not the reply, not tool calls, not the
      brain's state (the brain works on its own copy of the call's, saved only on
      confirmation);
    - no audio: the text the brain streams is buffered and handed to `on_text` only on
      confirmation;
    - only read-only tools run; the first effectful tool call (create_booking, transfer,
      a text message...) parks until confirmation (`GatedToolBox`), so the brain thinks
      ahead as far as it safely can and no further.

    Confirmation writes the caller's final text, flushes the buffered reply, opens the
    tool gate, and from then on the turn is an ordinary one (its end writes the reply,
    tool calls, state and cost). Discarding cancels the brain; the only trace is the
    cost of model tokens already spent, charged to the conversation. The brain saw the
    interim's text, so the session confirms only when the final has the same words.
    """

    def __init__(self, calls: VoiceCalls, call: VoiceCall, text: str) -> None:
        self.calls = calls
        self.call = call
        self.text = text
        self.customer_message_id: int | None = None
        self.parts: list[str] = []
        self.usages: list[ModelUsage] = []
        self.toolbox: GatedToolBox | None = None
        self.request: BrainRequest | None = None
        self.failed = False
        self._gate = asyncio.Event()
        self._on_text: Callable[[str], None] | None = None
        self._buffered: list[str] = []
        self._on_done: Callable[[], None] | None = None
        # While unconfirmed: each piece of text as it streams, then None when it is complete
        # (the session synthesises the first sentence ahead, see `agent.voice.ahead`).
        self.preview: Callable[[str | None], None] | None = None
        self._text_done = False  # the brain has finished streaming (SORRY included if it failed)
        self._settled = False  # confirmed-and-cancelled, or discarded: its cost is accounted for
        self._writing = False  # `confirm` writes the caller's words while the brain may still read history
        self._task = asyncio.create_task(self._think(), name=f"voice-draft:{call.call_sid}")
        self._task.add_done_callback(free_when_cancelled)

    @property
    def confirmed(self) -> bool:
        return self._gate.is_set()

    @property
    def has_text(self) -> bool:
        return bool(self.parts)

    @property
    def held_tool(self) -> str | None:
        """The effectful tool the draft is waiting to call, if it got that far."""
        return self.toolbox.held if self.toolbox is not None else None

    async def _think(self) -> None:
        calls, engine, call = self.calls, self.calls.engine, self.call
        now = engine.clock()
        score = sentiment.score(self.text)
        memory = await calls.recall(call)
        history, earlier = list(memory.history), list(memory.sentiments)
        if (
            self._writing
            and history
            and history[-1].role == Role.customer
            and history[-1].text == redact_cards(self.text)
        ):
            history.pop()  # our own words, written meanwhile by `confirm`: they are `text`
            earlier = earlier[:-1]
        state = copy.deepcopy(memory.state)
        self.request = request = BrainRequest(
            conversation_id=call.conversation_id,
            channel=Channel.voice,
            text=self.text,
            history=history,
            now=now,
            location_slug=call.location_slug,
            customer_phone=call.customer_phone,
            customer_name=memory.customer_name,
            state=state,
            sentiment=score,
            offer_human=sentiment.sharp_negative_trend([*earlier, score]),
        )
        self.toolbox = toolbox = GatedToolBox(calls._tool_context(call, now), list(engine.tools), self._gate)
        try:
            async with asyncio.timeout(engine.turn_timeout):
                async for event in engine.brain.respond(request, toolbox):
                    if isinstance(event, TextDelta):
                        self._emit(event.text)
                    else:
                        self.usages.append(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("brain failed on call %s", call.call_sid)
            self.failed = True
        if self.failed and not self.parts:
            self._emit(SORRY.format(staff=call.staff_phone))
        # The reply's text is complete: its last sentence can be spoken now, while the
        # turn is still being written down.
        self._text_done = True
        if self._on_done is not None:
            self._on_done()
        elif self.preview is not None:
            self.preview(None)

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        if self._on_text is None:
            self._buffered.append(text)
            if self.preview is not None:
                self.preview(text)
        else:
            self._on_text(text)

    async def confirm(
        self,
        final_text: str,
        *,
        on_text: Callable[[str], None],
        on_done: Callable[[], None] | None = None,
        marks: dict[str, Any] | None = None,
    ) -> VoiceTurnResult:
        """The caller said it: commit their words, let the reply out, finish the turn.

        `on_text` gets the reply as it streams; `on_done` is called once the reply's text
        is complete, before the turn is written down (so its last sentence can be spoken).
        """
        calls, call = self.calls, self.call
        write: asyncio.Task[int] | None = None
        if self.customer_message_id is None:  # written while the reply already goes out
            write = asyncio.create_task(calls._write_customer(call, final_text))
            self._writing = True
        try:
            self._on_text = on_text
            buffered, self._buffered = self._buffered, []
            for delta in buffered:
                on_text(delta)
            self._on_done = on_done
            if self._text_done and on_done is not None:
                on_done()
            if write is not None:
                self.customer_message_id = await asyncio.shield(write)
            self._gate.set()  # effects only once the caller's words are on record
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            # The call dropped mid-turn: keep what was produced (the brain's state is not saved).
            self._settled = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            if write is not None and self.customer_message_id is None:
                (written,) = await asyncio.gather(write, return_exceptions=True)
                self.customer_message_id = written if isinstance(written, int) else None
            if self.customer_message_id is not None:
                toolbox_calls = self.toolbox.calls if self.toolbox is not None else []
                await calls._write_reply(
                    call,
                    self.customer_message_id,
                    "".join(self.parts).strip(),
                    toolbox_calls,
                    self.usages,
                    marks,
                    truncated=True,
                )
            raise
        customer_message_id = self.customer_message_id
        assert customer_message_id is not None  # written above or before the draft started
        if self.request is not None:
            await save_state(calls.app.redis, call.conversation_id, self.request.state)
            calls._remember_state(call, self.request.state)
        tool_calls = self.toolbox.calls if self.toolbox is not None else []
        reply = "".join(self.parts).strip()
        agent_message_id = await calls._write_reply(
            call, customer_message_id, reply, tool_calls, self.usages, marks, truncated=False
        )
        effect = next((c.result.effect for c in reversed(tool_calls) if c.result.effect), None)
        return VoiceTurnResult(
            customer_message_id=customer_message_id,
            agent_message_id=agent_message_id,
            text=reply,
            effect=effect,
            tool_calls=list(tool_calls),
            transfer_to=_transfer_target(tool_calls),
        )

    def cancel(self) -> None:
        """Stop thinking now (synchronous; `discard` then settles the cost)."""
        if not self.confirmed:
            self._task.cancel()

    async def discard(self) -> None:
        """The caller went on: stop thinking; nothing was said or done (tokens spent are charged)."""
        if self.confirmed or self._settled:
            return
        self._settled = True
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        if self.usages:
            self.calls._charge_discarded(self.call, self.usages)
