"""Fallback across brains: primary LLM -> cheaper LLM -> deterministic brain.

`FallbackBrain` is itself a `Brain`, so the engine never knows a fallback happened
(except through the `hibachi_brain_fallbacks_total{brain,reason}` counter and the log).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import openai
from prometheus_client import Counter

from agent import prompts
from agent.aio import aclose_if_closable
from agent.brain import Brain, BrainEvent, BrainRequest, TextDelta
from agent.brains.llm import BrainTimeout, LLMBrain, build_client
from agent.tools.base import ToolBox, ToolResult

if TYPE_CHECKING:
    from hibachi.settings import Settings

log = logging.getLogger(__name__)

BRAIN_FALLBACKS = Counter(
    "hibachi_brain_fallbacks_total",
    "Turns a brain failed before saying anything, so the next brain answered.",
    ["brain", "reason"],
)


class FallbackBrain:
    """Tries `brains` in order for each turn until one answers.

    A brain is abandoned only if it fails (raises, including `BrainTimeout`) before it
    yielded any text; the next brain then answers the same request. Once a brain has
    yielded text the customer may already be hearing it, so a later failure is
    re-raised rather than answered twice. Usage events of failed brains are passed on
    (their tokens were spent).

    Side effects. A brain can fail after its tools already changed something: an LLM
    that created a booking and then timed out before its final sentence. The next brain
    must neither do it again nor pretend it did not happen, so before handing over:

    1. Each effectful call made by the failed brain (`tools.calls` grew) is written as a
       note into `request.state` (`prompts.NOTES_KEY`). LLM brains put these notes in
       their per-turn system message ("already done, do not repeat"), and the notes stay
       in the conversation state for later turns too.
    2. The next brains get a guarded `ToolBox` sharing the same call record: a repeat of
       an effectful tool that already succeeded this turn (same name) is not run again;
       it returns the earlier result. This protects brains that cannot read notes (the
       deterministic brain) and LLMs that ignore them: the second `create_booking`
       gets the first booking's confirmation, which it can then tell the customer.
    Read-only tools (`prompts.READ_ONLY_TOOLS`) are simply run again.
    """

    def __init__(self, brains: Sequence[Brain], *, name: str = "fallback") -> None:
        if not brains:
            raise ValueError("FallbackBrain needs at least one brain")
        self.brains = list(brains)
        self.name = name

    async def aclose(self) -> None:
        """Close the brains that hold a connection pool (the LLM brains' HTTP clients)."""
        for brain in self.brains:
            await aclose_if_closable(brain)

    async def respond(self, request: BrainRequest, tools: ToolBox) -> AsyncIterator[BrainEvent]:
        box = tools
        for position, brain in enumerate(self.brains):
            last = position == len(self.brains) - 1
            calls_before = len(tools.calls)
            said_anything = False
            try:
                async for event in brain.respond(request, box):
                    if isinstance(event, TextDelta) and event.text:
                        said_anything = True
                    yield event
                return
            except Exception as exc:
                if said_anything or last:
                    raise
                reason = failure_reason(exc)
                BRAIN_FALLBACKS.labels(brain=brain.name, reason=reason).inc()
                done = [c for c in tools.calls[calls_before:] if prompts.has_effects(c.name)]
                for call in done:
                    prompts.add_note(request.state, prompts.action_note(call))
                log.warning(
                    "brain %s failed (%s: %s) on conversation %s after %d tool call(s); trying %s",
                    brain.name,
                    reason,
                    exc,
                    request.conversation_id,
                    len(tools.calls) - calls_before,
                    self.brains[position + 1].name,
                )
                if done and box is tools:
                    box = ReplayingToolBox(tools)


class ReplayingToolBox(ToolBox):
    """A `ToolBox` sharing another's tools and call record that never repeats an effect.

    An effectful tool that already succeeded in this turn answers with its earlier
    result instead of running again; everything else runs as usual.
    """

    def __init__(self, inner: ToolBox) -> None:
        super().__init__(inner.context, list(inner.tools.values()))
        self.calls = inner.calls  # one record of the turn, whichever brain made the call

    async def call(self, name: str, arguments: dict[str, Any] | str) -> ToolResult:
        if prompts.has_effects(name):
            earlier = next((c for c in reversed(self.calls) if c.name == name and c.result.ok), None)
            if earlier is not None:
                log.info("not repeating %s in conversation %s", name, self.context.conversation_id)
                return earlier.result
        return await super().call(name, arguments)


def failure_reason(exc: BaseException) -> str:
    """A short, low-cardinality label for the metrics."""
    if isinstance(exc, BrainTimeout | TimeoutError | openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.APIStatusError):
        return "server_error" if exc.status_code >= 500 else f"http_{exc.status_code}"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    return "error"


def build_brain(settings: Settings, deterministic: Brain) -> Brain:
    """The brain for this process: `deterministic` alone without an OpenAI key; otherwise
    the primary model, then the fallback model (if set and different), then `deterministic`.
    """
    if not settings.openai_api_key:
        return deterministic
    client = build_client(settings)
    brains: list[Brain] = [LLMBrain.from_settings(settings, client)]
    fallback_model = settings.hibachi_llm_fallback_model
    if fallback_model and fallback_model != settings.hibachi_llm_model:
        brains.append(LLMBrain.from_settings(settings, client, model=fallback_model))
    brains.append(deterministic)
    return FallbackBrain(brains)
