"""The narrow interface every channel driver implements; the runner knows nothing else of channels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class AgentTurn:
    """What the agent said back to one caller turn (several texts or spoken sentences)."""

    texts: list[str] = field(default_factory=list)
    # Seconds from the caller's turn (voice: end of speech) to the first reply (voice: first audio).
    latency_s: float | None = None
    # True once the agent ended the conversation (hung up or transferred away).
    ended: bool = False

    @property
    def text(self) -> str:
        return " ".join(self.texts)


class Driver(Protocol):
    """One conversation with the agent, as one caller on one channel."""

    async def open(self) -> AgentTurn:
        """Start the conversation; voice drivers return the greeting, text drivers an empty turn."""
        ...

    async def send(self, text: str) -> AgentTurn:
        """Say or text `text` and return the agent's answer to it."""
        ...

    async def press(self, digits: str) -> AgentTurn:
        """Press keypad digits (voice); text drivers send them as a text."""
        ...

    async def close(self) -> None:
        """Hang up or stop texting; the conversation's records must be complete afterwards."""
        ...
