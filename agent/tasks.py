"""Jobs: answer conversations a crashed worker left pending."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agent.engine import ConversationEngine, pending_conversations
from hibachi.context import AppContext, utcnow

# A customer message unanswered this long was dropped by a dying worker.
STALE_AFTER = timedelta(seconds=60)


async def sweep_inbound(ctx: dict[str, Any]) -> int:
    """Re-drain conversations whose messages have waited too long; returns how many."""
    app: AppContext = ctx["app"]
    engine: ConversationEngine = app.extras["engine"]
    conversation_ids = await pending_conversations(app, older_than=STALE_AFTER, now=utcnow())
    for conversation_id in conversation_ids:
        await engine.drain(conversation_id)
    return len(conversation_ids)
