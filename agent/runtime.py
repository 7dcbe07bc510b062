"""Build the process's conversation engine from settings (app start, worker, CLI)."""

from __future__ import annotations

from agent.brain import Brain
from agent.cost import PriceTable
from agent.engine import ConversationEngine
from agent.sentiment import build_scorer
from hibachi.context import AppContext


def build_brain(app: AppContext) -> Brain:
    """The LLM brain with fallbacks when OPENAI_API_KEY is set; the deterministic brain otherwise."""
    from agent.brains.deterministic import DeterministicBrain
    from agent.brains.fallback import build_brain as compose

    return compose(app.settings, DeterministicBrain())


def build_engine(app: AppContext, *, brain: Brain | None = None) -> ConversationEngine:
    from agent.tools.registry import ALL_TOOLS

    return ConversationEngine(
        app,
        brain=brain or build_brain(app),
        tools=ALL_TOOLS,
        prices=PriceTable.load(app.settings.hibachi_price_table),
        turn_timeout=app.settings.hibachi_llm_turn_timeout + 5,
        scorer=build_scorer(app.settings),
    )
