"""`faq_search`: answer questions about the business from its knowledge base."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent.tools.base import Tool, ToolContext, ToolResult
from hibachi.db import unit_of_work
from knowledge.embeddings import Embedder
from knowledge.retrieve import search

MESSAGE_CHARS = 400


class FaqSearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(
        min_length=2,
        max_length=500,
        description=(
            "The customer's question, rephrased as a short standalone question "
            "(e.g. 'is there gluten-free soy sauce?', 'what is the cancellation policy?')."
        ),
    )
    k: int = Field(default=3, ge=1, le=8, description="How many passages to return.")


def shorten(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` cut to `limit` characters, at a sentence end when there is one."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    return cut[: end + 1] if end > limit // 3 else cut.rstrip() + "…"


async def run_faq_search(ctx: ToolContext, args: FaqSearchArgs) -> ToolResult:
    embedder: Embedder = ctx.app.extras["embedder"]
    async with unit_of_work(ctx.app.sessions) as session:
        result = await search(session, embedder=embedder, query=args.question, k=args.k)
    data = {
        "passages": [
            {
                "text": p.text,
                "source": p.source,
                "title": p.title,
                "score": p.score,
                "similarity": p.similarity,
            }
            for p in result.passages
        ],
        "confident": result.confident,
        "embedding_tokens": result.embedding_tokens,
        "embedding_model": result.model,
    }
    if not result.passages:
        return ToolResult(
            ok=True, message="I couldn't find that in our information; a staff member can help.", data=data
        )
    return ToolResult(ok=True, message=shorten(result.passages[0].text), data=data)


faq_search = Tool(
    name="faq_search",
    description=(
        "Look up My Hibachi's own policies and facts: what the chef brings and what the host provides, "
        "menu, prices, upgrades, tax and tips, allergies and dietary options, service areas and travel "
        "fees, booking rules, deposits, cancellation and rescheduling, Hibachi Rewards points, text "
        "reminders and opting out, privacy. Use it before answering any such question and answer only "
        "from the passages returned. If `confident` is false the knowledge base probably does not cover "
        "the question: say you are not sure and offer a staff member rather than guessing. Not for "
        "availability or a customer's own bookings or points (use the booking and loyalty tools)."
    ),
    args=FaqSearchArgs,
    run=run_faq_search,
)
