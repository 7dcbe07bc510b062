"""The caller's side of a trial: scripted turns, or an LLM playing the caller.

`ScriptedCaller` replays a scenario's `turns` and always works offline.
`LLMCaller` is tau-bench's user simulator: a chat model is told the persona, what
the caller knows and wants, and the goal, sees the conversation with the roles
swapped (the agent's lines are its "user" messages), and writes the caller's next
line. It ends the call by answering `###STOP###` once the goal is reached or cannot
be; the runner also stops it when the agent hands off to staff or hangs up, or after
`max_turns`.
"""

from __future__ import annotations

from typing import Protocol

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from evals.results import TurnRecord
from evals.scenario import Press, Scenario, Turn
from hibachi.settings import Settings

STOP = "###STOP###"
CALLER_MODEL = "gpt-4o-mini"

SYSTEM = """You are role-playing a customer who is {medium} My Hibachi, a private hibachi-chef \
catering business, to talk with its AI agent. Stay in character; you are the customer, never the agent.

Who you are: {persona}
What you know: {knows}
What you want: {wants}
Your goal for this conversation: {goal}

Rules:
- Write only the customer's next message: one or two short sentences, as a real person would \
{verb}. No stage directions, no quotation marks.
- Give details only when asked or when natural; never invent facts beyond what you know.
- When your goal is reached, or it clearly cannot be reached, or the agent hands you to a person, \
answer exactly {stop} and nothing else."""


class Caller(Protocol):
    """Produces the caller's next turn from the conversation so far; None ends the conversation."""

    async def next_turn(self, transcript: list[TurnRecord]) -> Turn | None: ...


class ScriptedCaller:
    def __init__(self, turns: list[Turn]) -> None:
        self.turns = list(turns)
        self.index = 0

    async def next_turn(self, transcript: list[TurnRecord]) -> Turn | None:
        if self.index >= len(self.turns):
            return None
        turn = self.turns[self.index]
        self.index += 1
        return turn


class LLMCaller:
    """An LLM plays the caller of `scenario` (persona, knowledge, wants, goal)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        client: AsyncOpenAI,
        model: str = CALLER_MODEL,
        temperature: float = 1.0,
    ) -> None:
        self.scenario = scenario
        self.client = client
        self.model = model
        self.temperature = temperature
        self.turns_taken = 0
        self.stopped = False
        voice = scenario.channel != "sms"
        caller = scenario.caller
        self.system = SYSTEM.format(
            medium="phoning" if voice else "texting",
            verb="say it on the phone" if voice else "text it",
            persona=caller.persona or "an ordinary customer",
            knows=caller.knows or "nothing special",
            wants=caller.wants or scenario.goal or "",
            goal=scenario.goal or caller.wants,
            stop=STOP,
        )

    async def next_turn(self, transcript: list[TurnRecord]) -> Turn | None:
        if self.stopped or self.turns_taken >= self.scenario.max_turns:
            return None
        messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": self.system}]
        for turn in transcript:
            # Roles swap: the agent speaks to the simulated caller as its "user".
            if turn.role == "agent":
                messages.append({"role": "user", "content": turn.text or "(silence)"})
            else:
                messages.append({"role": "assistant", "content": turn.text})
        if not transcript or transcript[-1].role != "agent":
            messages.append({"role": "user", "content": "(the agent is waiting for you to start)"})
        completion = await self.client.chat.completions.create(
            model=self.model, messages=messages, temperature=self.temperature
        )
        line = (completion.choices[0].message.content or "").strip()
        if not line or STOP in line:
            self.stopped = True
            return None
        self.turns_taken += 1
        return line


def caller_client(settings: Settings) -> AsyncOpenAI:
    """The OpenAI client the simulated caller uses (the same key and base URL as the agent)."""
    if not settings.openai_api_key:
        raise RuntimeError("the simulated caller needs an LLM: set OPENAI_API_KEY (and OPENAI_BASE_URL)")
    return AsyncOpenAI(api_key=settings.openai_api_key, base_url=settings.openai_base_url, max_retries=2)


def describe(turn: Turn) -> str:
    """A turn as it appears in the transcript."""
    return f"[pressed {turn.press}]" if isinstance(turn, Press) else turn
