"""asyncio helpers."""

from __future__ import annotations

import asyncio
import traceback
from typing import Any


def free_when_cancelled(task: asyncio.Task[Any]) -> None:
    """Done-callback: a cancelled task's frames let go of their locals at once.

    A task cancelled mid-request (a discarded pre-emptive draft deep in an HTTP read)
    unwinds a few dozen frames, and its CancelledError's traceback keeps them all. Library
    code that re-raises `exc` from `except ... as exc` leaves frame <-> exception cycles in
    there, and the draft's own frame holds the draft, which holds the task: everything the
    request touched then waits for the cycle collector, whose passes over it stall the
    event loop that every call shares. Clearing the finished frames breaks those cycles,
    so reference counting frees them now. Whoever awaits the task still gets a
    CancelledError (asyncio makes a fresh one once this callback has taken the first).
    Add it first, so that it runs before any awaiter's callback.
    """
    if not task.cancelled():
        return
    try:
        task.result()
    except asyncio.CancelledError as cancelled:
        traceback.clear_frames(cancelled.__traceback__)


async def aclose_if_closable(resource: object) -> None:
    """`await resource.aclose()` for the parts that hold connections (LLM brains, scorers)."""
    aclose = getattr(resource, "aclose", None)
    if aclose is not None:
        await aclose()
